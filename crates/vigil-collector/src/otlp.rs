//! A strict parser for OTLP/HTTP JSON log exports (`POST /v1/logs`).
//!
//! The schema is opentelemetry-proto's `ExportLogsServiceRequest`
//! (`collector/logs/v1/logs_service.proto`, `logs/v1/logs.proto`,
//! `common/v1/common.proto`, `resource/v1/resource.proto`) in the OTLP JSON
//! encoding. A real receiver ignores fields it does not know; this one is a
//! test collector and refuses them, so that a sender writing anything the
//! schema does not define fails loudly. It also refuses:
//!
//! - field names that are not lowerCamelCase (the JSON mapping's names);
//! - enum values written as names (`"SEVERITY_NUMBER_INFO"`): OTLP requires
//!   integers, and a `severityNumber` outside 0 to 24;
//! - 64-bit integers that are neither a decimal string nor a JSON integer;
//! - an `AnyValue` with more than one value field;
//! - a `traceId` or `spanId` that is not 32 or 16 hex digits;
//! - two attributes of one log record with the same key;
//! - a log record without a `vigil.seq` attribute holding a non-negative
//!   integer (an `intValue`, or a `stringValue` of decimal digits for a
//!   sequence number above `i64::MAX`), which the collector de-duplicates by.
//!
//! Each log record becomes a [`Record`] whose JSON, as the NDJSON log
//! stores it, is `{"seq":N,"ts":<unix ms>,"event":<body>}`: the body turned
//! back into plain JSON, like the records of `/ingest`.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;

use crate::ingest::Record;

/// The attribute that carries Vigil's sequence number.
pub(crate) const SEQ_ATTRIBUTE: &str = "vigil.seq";

/// Why an OTLP body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaError(pub(crate) String);

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an OTLP ExportLogsServiceRequest: {}", self.0)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExportLogsServiceRequest {
    #[serde(default)]
    resource_logs: Vec<ResourceLogs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ResourceLogs {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default)]
    scope_logs: Vec<ScopeLogs>,
    #[serde(default)]
    #[allow(dead_code)]
    schema_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Resource {
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default)]
    #[allow(dead_code)]
    dropped_attributes_count: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScopeLogs {
    #[serde(default)]
    scope: Option<InstrumentationScope>,
    #[serde(default)]
    log_records: Vec<LogRecord>,
    #[serde(default)]
    #[allow(dead_code)]
    schema_url: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InstrumentationScope {
    #[serde(default)]
    #[allow(dead_code)]
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    version: String,
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default)]
    #[allow(dead_code)]
    dropped_attributes_count: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LogRecord {
    #[serde(default, deserialize_with = "fixed64")]
    time_unix_nano: u64,
    #[serde(default, deserialize_with = "fixed64")]
    observed_time_unix_nano: u64,
    #[serde(default)]
    severity_number: u8,
    #[serde(default)]
    #[allow(dead_code)]
    severity_text: String,
    #[serde(default)]
    body: Option<AnyValue>,
    #[serde(default)]
    attributes: Vec<KeyValue>,
    #[serde(default)]
    #[allow(dead_code)]
    dropped_attributes_count: u32,
    #[serde(default)]
    #[allow(dead_code)]
    flags: u32,
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    span_id: String,
    #[serde(default)]
    #[allow(dead_code)]
    event_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: Option<AnyValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AnyValue {
    string_value: Option<String>,
    bool_value: Option<bool>,
    #[serde(default, deserialize_with = "int64")]
    int_value: Option<i64>,
    double_value: Option<f64>,
    array_value: Option<ArrayValue>,
    kvlist_value: Option<KeyValueList>,
    bytes_value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ArrayValue {
    #[serde(default)]
    values: Vec<AnyValue>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KeyValueList {
    #[serde(default)]
    values: Vec<KeyValue>,
}

/// A 64-bit integer as the JSON mapping writes it: a decimal string, or a
/// JSON integer (which parsers must accept too).
#[derive(Deserialize)]
#[serde(untagged)]
enum Int64Text {
    Signed(i64),
    Unsigned(u64),
    Text(String),
}

impl Int64Text {
    fn value(self) -> Result<i128, String> {
        match self {
            Int64Text::Signed(n) => Ok(i128::from(n)),
            Int64Text::Unsigned(n) => Ok(i128::from(n)),
            Int64Text::Text(s) => {
                let digits = s.strip_prefix('-').unwrap_or(&s);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("{s:?} is not a decimal integer"));
                }
                s.parse().map_err(|_| format!("{s:?} is out of range"))
            }
        }
    }
}

fn fixed64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = Int64Text::deserialize(d)?.value().map_err(de::Error::custom)?;
    u64::try_from(n).map_err(|_| de::Error::custom(format!("{n} is not a fixed64")))
}

fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let n = Int64Text::deserialize(d)?.value().map_err(de::Error::custom)?;
    i64::try_from(n).map(Some).map_err(|_| de::Error::custom(format!("{n} is not an int64")))
}

impl AnyValue {
    /// The value as plain JSON; refuses more than one value field.
    fn to_json(&self, at: &str) -> Result<Value, SchemaError> {
        let set = [
            self.string_value.is_some(),
            self.bool_value.is_some(),
            self.int_value.is_some(),
            self.double_value.is_some(),
            self.array_value.is_some(),
            self.kvlist_value.is_some(),
            self.bytes_value.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            return Err(SchemaError(format!("{at}: an AnyValue holds more than one value")));
        }
        Ok(if let Some(s) = &self.string_value {
            Value::from(s.as_str())
        } else if let Some(b) = self.bool_value {
            Value::from(b)
        } else if let Some(i) = self.int_value {
            Value::from(i)
        } else if let Some(f) = self.double_value {
            Value::from(f)
        } else if let Some(array) = &self.array_value {
            let items: Result<Vec<Value>, SchemaError> =
                array.values.iter().enumerate().map(|(i, v)| v.to_json(&format!("{at}[{i}]"))).collect();
            Value::Array(items?)
        } else if let Some(list) = &self.kvlist_value {
            let mut object = serde_json::Map::new();
            for kv in &list.values {
                object.insert(kv.key.clone(), kv.json(at)?);
            }
            Value::Object(object)
        } else if let Some(bytes) = &self.bytes_value {
            // base64 in the JSON mapping; kept as the text it arrived as.
            Value::from(bytes.as_str())
        } else {
            Value::Null
        })
    }
}

impl KeyValue {
    fn json(&self, at: &str) -> Result<Value, SchemaError> {
        match &self.value {
            Some(v) => v.to_json(&format!("{at}.{}", self.key)),
            None => Ok(Value::Null),
        }
    }
}

fn check_id(id: &str, hex_len: usize, name: &str, at: &str) -> Result<(), SchemaError> {
    if id.is_empty() || (id.len() == hex_len && id.bytes().all(|b| b.is_ascii_hexdigit())) {
        Ok(())
    } else {
        Err(SchemaError(format!("{at}: {name} must be {hex_len} hex digits, found {id:?}")))
    }
}

fn check_attributes(attributes: &[KeyValue], at: &str) -> Result<(), SchemaError> {
    for (i, kv) in attributes.iter().enumerate() {
        if attributes[..i].iter().any(|other| other.key == kv.key) {
            return Err(SchemaError(format!("{at}: attribute {:?} appears twice", kv.key)));
        }
        kv.json(at)?;
    }
    Ok(())
}

/// The sequence number in a log record's `vigil.seq` attribute.
fn seq_of(attributes: &[KeyValue], at: &str) -> Result<u64, SchemaError> {
    let missing = || SchemaError(format!("{at}: no {SEQ_ATTRIBUTE} attribute holding a non-negative integer"));
    let value =
        attributes.iter().find(|kv| kv.key == SEQ_ATTRIBUTE).and_then(|kv| kv.value.as_ref()).ok_or_else(missing)?;
    if let Some(i) = value.int_value {
        return u64::try_from(i).map_err(|_| missing());
    }
    match &value.string_value {
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().map_err(|_| missing()),
        _ => Err(missing()),
    }
}

/// Parses an `ExportLogsServiceRequest` in the OTLP JSON encoding into one
/// record per log record, refusing anything the schema does not allow (see
/// the [module documentation](self)).
pub(crate) fn parse_logs_request(body: &[u8]) -> Result<Vec<Record>, SchemaError> {
    let request: ExportLogsServiceRequest = serde_json::from_slice(body).map_err(|e| SchemaError(e.to_string()))?;
    let mut records = Vec::new();
    for (r, resource_logs) in request.resource_logs.iter().enumerate() {
        let at = format!("resourceLogs[{r}]");
        if let Some(resource) = &resource_logs.resource {
            check_attributes(&resource.attributes, &format!("{at}.resource"))?;
        }
        for (s, scope_logs) in resource_logs.scope_logs.iter().enumerate() {
            let at = format!("{at}.scopeLogs[{s}]");
            if let Some(scope) = &scope_logs.scope {
                check_attributes(&scope.attributes, &format!("{at}.scope"))?;
            }
            for (l, log) in scope_logs.log_records.iter().enumerate() {
                let at = format!("{at}.logRecords[{l}]");
                if log.severity_number > 24 {
                    return Err(SchemaError(format!("{at}: severityNumber {} is not 0 to 24", log.severity_number)));
                }
                check_id(&log.trace_id, 32, "traceId", &at)?;
                check_id(&log.span_id, 16, "spanId", &at)?;
                check_attributes(&log.attributes, &at)?;
                let seq = seq_of(&log.attributes, &at)?;
                let event = match &log.body {
                    Some(body) => body.to_json(&format!("{at}.body"))?,
                    None => Value::Null,
                };
                let nanos = if log.time_unix_nano != 0 { log.time_unix_nano } else { log.observed_time_unix_nano };
                let json =
                    serde_json::to_vec(&serde_json::json!({ "seq": seq, "ts": nanos / 1_000_000, "event": event }))
                        .map_err(|e| SchemaError(format!("{at}: {e}")))?;
                records.push(Record { seq, json });
            }
        }
    }
    Ok(records)
}

/// The `ExportLogsServiceResponse` for a request of which `rejected` log
/// records were refused: `{}` when none were.
pub(crate) fn response(rejected: u64, message: &str) -> Value {
    if rejected == 0 {
        return serde_json::json!({});
    }
    serde_json::json!({
        "partialSuccess": { "rejectedLogRecords": rejected.to_string(), "errorMessage": message }
    })
}

/// The body of an OTLP error answer: a `google.rpc.Status` in JSON, as the
/// OTLP/HTTP specification asks (`code` 3 is `INVALID_ARGUMENT`).
pub(crate) fn status_body(message: &str) -> Value {
    serde_json::json!({ "code": 3, "message": message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(records: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "resourceLogs": [{
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "t"}}]},
                "scopeLogs": [{"scope": {"name": "vigil", "version": "0"}, "logRecords": records}]
            }]
        }))
        .unwrap()
    }

    fn seq(n: Value) -> Value {
        json!([{"key": "vigil.seq", "value": n}])
    }

    #[test]
    fn parses_a_vigil_batch_back_into_plain_records() {
        let body = request(json!([
            {"timeUnixNano": "1700000000123000000", "observedTimeUnixNano": "1700000000123000000",
             "severityNumber": 9, "severityText": "INFO", "eventName": "e",
             "body": {"kvlistValue": {"values": [
                {"key": "a", "value": {"arrayValue": {"values": [{"intValue": "-3"}, {}, {"doubleValue": 1.5}, {"boolValue": true}]}}},
                {"key": "b", "value": {"stringValue": "ü"}}]}},
             "attributes": seq(json!({"intValue": "7"})),
             "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "flags": 1},
            {"timeUnixNano": 5_000_000, "attributes": seq(json!({"stringValue": "18446744073709551615"}))}
        ]));
        let records = parse_logs_request(&body).unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [7, u64::MAX]);
        let first: Value = serde_json::from_slice(&records[0].json).unwrap();
        assert_eq!(
            first,
            json!({"seq": 7, "ts": 1_700_000_000_123u64, "event": {"a": [-3, null, 1.5, true], "b": "ü"}})
        );
        let second: Value = serde_json::from_slice(&records[1].json).unwrap();
        assert_eq!(second, json!({"seq": u64::MAX, "ts": 5, "event": null}));
        assert!(parse_logs_request(b"{}").unwrap().is_empty());
    }

    #[test]
    fn refuses_what_the_schema_does_not_allow() {
        let ok_attrs = seq(json!({"intValue": "1"}));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "expected"),
            (b"{\"resource_logs\":[]}".to_vec(), "unknown field `resource_logs`"),
            (request(json!([{"attributes": ok_attrs, "severity": 9}])), "unknown field `severity`"),
            (
                request(json!([{"attributes": ok_attrs, "severityNumber": "SEVERITY_NUMBER_INFO"}])),
                "invalid type: string",
            ),
            (request(json!([{"attributes": ok_attrs, "severityNumber": 25}])), "severityNumber 25"),
            (request(json!([{"attributes": ok_attrs, "timeUnixNano": "12x"}])), "not a decimal integer"),
            (request(json!([{"attributes": ok_attrs, "timeUnixNano": 1.5}])), "did not match any variant"),
            (request(json!([{"attributes": ok_attrs, "timeUnixNano": "-1"}])), "not a fixed64"),
            (
                request(json!([{"attributes": ok_attrs, "body": {"stringValue": "a", "intValue": "1"}}])),
                "more than one",
            ),
            (request(json!([{"attributes": ok_attrs, "body": {"intValue": "9223372036854775808"}}])), "not an int64"),
            (request(json!([{"attributes": ok_attrs, "body": {"mapValue": {}}}])), "unknown field `mapValue`"),
            (request(json!([{"attributes": ok_attrs, "traceId": "xyz"}])), "traceId must be 32 hex digits"),
            (request(json!([{"attributes": ok_attrs, "spanId": "AAAAAAAAAAAAAAAAAAAAAA=="}])), "spanId"),
            (request(json!([{}])), "no vigil.seq"),
            (request(json!([{"attributes": seq(json!({"intValue": "-1"}))}])), "no vigil.seq"),
            (request(json!([{"attributes": seq(json!({"stringValue": "one"}))}])), "no vigil.seq"),
            (
                request(json!([{"attributes": [
                    {"key": "vigil.seq", "value": {"intValue": "1"}},
                    {"key": "vigil.seq", "value": {"intValue": "2"}}]}])),
                "appears twice",
            ),
        ];
        for (body, words) in cases {
            let err = parse_logs_request(&body).unwrap_err();
            assert!(
                err.to_string().contains(words),
                "{err} should mention {words}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn responses_follow_the_service_definition() {
        assert_eq!(response(0, "ignored"), json!({}));
        assert_eq!(response(3, "bad"), json!({"partialSuccess": {"rejectedLogRecords": "3", "errorMessage": "bad"}}));
        assert_eq!(status_body("x"), json!({"code": 3, "message": "x"}));
    }

    mod vigil_batches {
        use super::*;
        use proptest::prelude::*;
        use vigil_events::{LogFields, OtlpLogs, Severity};

        fn any_json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
                any::<String>().prop_map(Value::from),
            ];
            leaf.prop_recursive(4, 64, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                    prop::collection::btree_map(any::<String>(), inner, 0..8)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// What the collector reads back for an event: the same JSON, but
        /// an unsigned integer past `i64::MAX` arrives as its digits.
        fn expected(event: &Value) -> Value {
            match event {
                Value::Number(n) if n.as_i64().is_none() && n.as_u64().is_some() => Value::from(n.to_string()),
                Value::Array(items) => Value::Array(items.iter().map(expected).collect()),
                Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), expected(v))).collect()),
                other => other.clone(),
            }
        }

        /// Equal, with floats compared to within 4 units in the last place:
        /// the encoder writes the shortest exact digits, but serde_json's
        /// default parser (without `float_roundtrip`) may read the last bit
        /// differently, most of all for subnormals.
        fn same(got: &Value, want: &Value) -> bool {
            match (got, want) {
                (Value::Number(g), Value::Number(w)) if w.is_f64() => {
                    let (g, w) = (g.as_f64().unwrap_or(f64::NAN), w.as_f64().unwrap_or(f64::NAN));
                    let ulps = (g.to_bits() as i64).wrapping_sub(w.to_bits() as i64).unsigned_abs();
                    g == w || (g.is_sign_negative() == w.is_sign_negative() && ulps <= 4)
                }
                (Value::Array(g), Value::Array(w)) => g.len() == w.len() && g.iter().zip(w).all(|(g, w)| same(g, w)),
                (Value::Object(g), Value::Object(w)) => {
                    g.len() == w.len() && w.iter().all(|(k, w)| g.get(k).is_some_and(|g| same(g, w)))
                }
                _ => got == want,
            }
        }

        proptest! {
            #[test]
            fn the_strict_parser_accepts_every_batch_vigil_encodes(
                events in prop::collection::vec((any::<u64>(), 0u64..=u64::MAX / 1_000_000, any_json()), 0..12),
                mapped in any::<bool>(),
            ) {
                let mut otlp = OtlpLogs::new().resource_attribute("deployment.environment.name", "proptest");
                if mapped {
                    otlp = otlp.map(|event| {
                        LogFields::new()
                            .severity(Severity::ERROR)
                            .event_name("mapped")
                            .attribute("copy", event.clone())
                            .attribute("vigil.seq", "shadowed")
                    });
                }
                let body = otlp.encode(events.iter().map(|(seq, ts, event)| (*seq, *ts, event))).unwrap();
                let records = parse_logs_request(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(records.len(), events.len());
                for (record, (seq, ts, event)) in records.iter().zip(&events) {
                    prop_assert_eq!(record.seq, *seq);
                    let json: Value = serde_json::from_slice(&record.json).unwrap();
                    prop_assert_eq!(&json["ts"], &Value::from(*ts));
                    prop_assert!(same(&json["event"], &expected(event)), "{} != {}", json["event"], event);
                }
            }
        }
    }
}
