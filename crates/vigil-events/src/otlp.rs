//! OTLP logs in the JSON encoding: one `ExportLogsServiceRequest` per batch.
//!
//! Written from opentelemetry-proto's `collector/logs/v1/logs_service.proto`,
//! `logs/v1/logs.proto` and `common/v1/common.proto`, and the OTLP
//! specification's "JSON Protobuf Encoding": field names in lowerCamelCase,
//! 64-bit integers as decimal strings, enum values as integers, no field the
//! schema does not define.
//!
//! A batch body is
//!
//! ```text
//! {"resourceLogs":[{"resource":{"attributes":[…]},
//!   "scopeLogs":[{"scope":{"name":"vigil","version":"…"},"logRecords":[R1,R2,…]}]}]}
//! ```
//!
//! The part before the first record and the part after the last one depend
//! only on the configuration ([`OtlpLogs`]), so records are encoded one at a
//! time like the other encodings, and a batch the receiver finds too large is
//! split without encoding anything again.
//!
//! One log record per event:
//!
//! | field | value |
//! |---|---|
//! | `timeUnixNano`, `observedTimeUnixNano` | when the event was emitted, in nanoseconds (millisecond precision), as a decimal string |
//! | `severityNumber`, `severityText` | [`Severity::INFO`] and `"INFO"`, unless the [mapping](OtlpLogs::map) says otherwise |
//! | `eventName` | only when the mapping names one |
//! | `body` | the event as an `AnyValue` (see below) |
//! | `attributes` | `vigil.seq` (the event's sequence number, an `intValue`; a `stringValue` of its digits past `i64::MAX`), then the mapping's attributes |
//!
//! The event becomes an `AnyValue` through its `serde_json::Value`: an object
//! is a `kvlistValue`, an array an `arrayValue`, a string a `stringValue`, a
//! boolean a `boolValue`, an integer that fits `int64` an `intValue` (a
//! decimal string), another number a `doubleValue`, and `null` an empty
//! `AnyValue` (`{}`, which OTLP reads as "no value"). An unsigned integer
//! above `i64::MAX` has no `intValue`; it becomes a `stringValue` holding its
//! decimal digits, so no digit is lost (a `doubleValue` would round it).
//! Without serde_json's `preserve_order` feature, object keys come sorted.

use std::fmt;
use std::io::Write;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

/// The attribute that carries an event's sequence number on every log record.
pub const SEQ_ATTRIBUTE: &str = "vigil.seq";

/// A log record's severity: an OTLP `SeverityNumber` from 1 (`TRACE`) to 24
/// (`FATAL4`).
///
/// # Examples
///
/// ```
/// use vigil_events::Severity;
/// assert_eq!(Severity::WARN.number(), 13);
/// assert_eq!(Severity::WARN.text(), "WARN");
/// assert_eq!(Severity::from_number(10).map(Severity::text), Some("INFO2"));
/// assert_eq!(Severity::from_number(0), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Severity(u8);

impl Severity {
    /// `SEVERITY_NUMBER_TRACE` (1).
    pub const TRACE: Severity = Severity(1);
    /// `SEVERITY_NUMBER_DEBUG` (5).
    pub const DEBUG: Severity = Severity(5);
    /// `SEVERITY_NUMBER_INFO` (9), the default.
    pub const INFO: Severity = Severity(9);
    /// `SEVERITY_NUMBER_WARN` (13).
    pub const WARN: Severity = Severity(13);
    /// `SEVERITY_NUMBER_ERROR` (17).
    pub const ERROR: Severity = Severity(17);
    /// `SEVERITY_NUMBER_FATAL` (21).
    pub const FATAL: Severity = Severity(21);

    /// The severity with this `SeverityNumber`, if it is one (1 to 24; 0,
    /// "unspecified", must not be used).
    pub fn from_number(number: u8) -> Option<Severity> {
        (1..=24).contains(&number).then_some(Severity(number))
    }

    /// The `SeverityNumber`.
    pub fn number(self) -> u8 {
        self.0
    }

    /// The short name the log data model gives this number: `TRACE`,
    /// `DEBUG2`, `INFO`, `WARN4`, `ERROR`, `FATAL3` ….
    pub fn text(self) -> &'static str {
        const NAMES: [&str; 24] = [
            "TRACE", "TRACE2", "TRACE3", "TRACE4", "DEBUG", "DEBUG2", "DEBUG3", "DEBUG4", "INFO", "INFO2", "INFO3",
            "INFO4", "WARN", "WARN2", "WARN3", "WARN4", "ERROR", "ERROR2", "ERROR3", "ERROR4", "FATAL", "FATAL2",
            "FATAL3", "FATAL4",
        ];
        NAMES[usize::from(self.0.clamp(1, 24) - 1)]
    }
}

/// What a [mapping](OtlpLogs::map) takes from one event for its log record.
///
/// # Examples
///
/// ```
/// use vigil_events::{LogFields, Severity};
/// let fields = LogFields::new().severity(Severity::ERROR).event_name("disk.full").attribute("disk", "sda");
/// assert_eq!(fields, LogFields::new().severity(Severity::ERROR).event_name("disk.full").attribute("disk", "sda"));
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[must_use]
pub struct LogFields {
    severity: Option<Severity>,
    severity_text: Option<String>,
    event_name: Option<String>,
    attributes: Vec<(String, Value)>,
}

impl LogFields {
    /// Nothing but the defaults: `INFO`, no event name, no extra attributes.
    pub fn new() -> LogFields {
        LogFields::default()
    }

    /// The severity. Defaults to [`Severity::INFO`].
    pub fn severity(mut self, severity: Severity) -> LogFields {
        self.severity = Some(severity);
        self
    }

    /// The severity text, as the source calls the level. Defaults to the
    /// severity's [short name](Severity::text).
    pub fn severity_text(mut self, text: impl Into<String>) -> LogFields {
        self.severity_text = Some(text.into());
        self
    }

    /// The `eventName`: what kind of event this is (`"order.placed"`).
    /// Defaults to none (the field is left out).
    pub fn event_name(mut self, name: impl Into<String>) -> LogFields {
        self.event_name = Some(name.into());
        self
    }

    /// One more attribute. A key given twice, or `vigil.seq`, keeps its first
    /// value (attribute keys must be unique in OTLP).
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> LogFields {
        self.attributes.push((key.into(), value.into()));
        self
    }
}

type Mapping = Arc<dyn Fn(&Value) -> LogFields + Send + Sync>;

/// How events become OTLP log records: the resource, and a mapping from an
/// event to its severity, event name and extra attributes.
///
/// Set it with [`Config::otlp_logs`](crate::Config::otlp_logs), which also
/// selects [`Encoding::OtlpLogsJson`](crate::Encoding::OtlpLogsJson). The
/// defaults need nothing from the event type.
///
/// The resource attributes are `service.name` (default
/// `unknown_service:<executable name>`, as the OpenTelemetry semantic
/// conventions ask), `service.instance.id` (default: a random id, new in
/// every process) and `host.name` (default: the kernel's host name, left out
/// when it cannot be read), then whatever
/// [`resource_attribute`](OtlpLogs::resource_attribute) adds.
///
/// # Examples
///
/// ```
/// use vigil_events::{Config, LogFields, OtlpLogs, Severity};
///
/// let otlp = OtlpLogs::new().service_name("checkout").resource_attribute("deployment.environment.name", "prod").map(
///     |event| {
///         let level = if event["error"].is_null() { Severity::INFO } else { Severity::ERROR };
///         LogFields::new().severity(level).event_name(event["kind"].as_str().unwrap_or("event"))
///     },
/// );
/// let config = Config::default().otlp_logs(otlp);
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone)]
#[must_use]
pub struct OtlpLogs {
    resource: Vec<(String, Value)>,
    map: Option<Mapping>,
}

impl Default for OtlpLogs {
    fn default() -> OtlpLogs {
        let mut resource = vec![
            ("service.name".to_string(), Value::from(default_service_name())),
            ("service.instance.id".to_string(), Value::from(random_instance_id())),
        ];
        if let Some(host) = host_name() {
            resource.push(("host.name".to_string(), Value::from(host)));
        }
        OtlpLogs { resource, map: None }
    }
}

impl OtlpLogs {
    /// The defaults: see the [type's documentation](OtlpLogs).
    pub fn new() -> OtlpLogs {
        OtlpLogs::default()
    }

    /// The `service.name` resource attribute.
    pub fn service_name(self, name: impl Into<String>) -> OtlpLogs {
        self.resource_attribute("service.name", name.into())
    }

    /// The `service.instance.id` resource attribute.
    pub fn service_instance_id(self, id: impl Into<String>) -> OtlpLogs {
        self.resource_attribute("service.instance.id", id.into())
    }

    /// The `host.name` resource attribute; `None` leaves it out.
    pub fn host_name(mut self, host: Option<String>) -> OtlpLogs {
        match host {
            Some(host) => self.resource_attribute("host.name", host),
            None => {
                self.resource.retain(|(k, _)| k != "host.name");
                self
            }
        }
    }

    /// Sets a resource attribute, replacing one with the same key. The value
    /// becomes an `AnyValue` like an event body does.
    pub fn resource_attribute(mut self, key: impl Into<String>, value: impl Into<Value>) -> OtlpLogs {
        let (key, value) = (key.into(), value.into());
        match self.resource.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.resource.push((key, value)),
        }
        self
    }

    /// The resource attributes, in the order they are written.
    pub fn resource(&self) -> &[(String, Value)] {
        &self.resource
    }

    /// Maps an event (as its `serde_json::Value`) to its severity, event name
    /// and extra attributes. It runs on the batcher's thread for every event;
    /// a panic in it is handled like a panic in the event's `Serialize`: the
    /// batcher restarts and the event is dropped with the reason `encode`.
    pub fn map(mut self, f: impl Fn(&Value) -> LogFields + Send + Sync + 'static) -> OtlpLogs {
        self.map = Some(Arc::new(f));
        self
    }

    /// Encodes `records` (sequence number, emit time in Unix milliseconds,
    /// event) as one `ExportLogsServiceRequest`: the body the batcher sends
    /// for a batch of these events.
    ///
    /// # Errors
    ///
    /// An event that cannot be serialized to JSON.
    ///
    /// # Examples
    ///
    /// ```
    /// use vigil_events::OtlpLogs;
    /// let body = OtlpLogs::new().service_name("demo").encode([(7, 1_700_000_000_000, &"hello")])?;
    /// let request: serde_json::Value = serde_json::from_slice(&body)?;
    /// let record = &request["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    /// assert_eq!(record["body"]["stringValue"], "hello");
    /// assert_eq!(record["timeUnixNano"], "1700000000000000000");
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn encode<'a, E: Serialize + ?Sized + 'a>(
        &self,
        records: impl IntoIterator<Item = (u64, u64, &'a E)>,
    ) -> Result<Vec<u8>, serde_json::Error> {
        let envelope = self.envelope();
        let mut body = envelope.prefix.clone();
        for (i, (seq, ts_ms, event)) in records.into_iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            self.encode_record(&mut body, seq, ts_ms, event)?;
        }
        body.extend_from_slice(SUFFIX);
        Ok(body)
    }

    /// Appends one log record to `out`. On error `out` is left as it was.
    pub(crate) fn encode_record<E: Serialize + ?Sized>(
        &self,
        out: &mut Vec<u8>,
        seq: u64,
        ts_ms: u64,
        event: &E,
    ) -> Result<(), serde_json::Error> {
        let event = serde_json::to_value(event)?;
        let fields = match &self.map {
            Some(map) => map(&event),
            None => LogFields::default(),
        };
        let severity = fields.severity.unwrap_or(Severity::INFO);
        let nanos = u128::from(ts_ms) * 1_000_000;
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "{{\"timeUnixNano\":\"{nanos}\",\"observedTimeUnixNano\":\"{nanos}\",\"severityNumber\":{},\"severityText\":",
            severity.number()
        );
        json_string(out, fields.severity_text.as_deref().unwrap_or(severity.text()));
        if let Some(name) = &fields.event_name {
            out.extend_from_slice(b",\"eventName\":");
            json_string(out, name);
        }
        out.extend_from_slice(b",\"body\":");
        any_value(out, &event);
        out.extend_from_slice(b",\"attributes\":[");
        key_value(out, SEQ_ATTRIBUTE, &Value::from(seq));
        let mut seen: Vec<&str> = vec![SEQ_ATTRIBUTE];
        for (key, value) in &fields.attributes {
            if seen.contains(&key.as_str()) {
                continue;
            }
            seen.push(key);
            out.push(b',');
            key_value(out, key, value);
        }
        out.extend_from_slice(b"]}");
        Ok(())
    }

    /// The fixed parts of every batch body.
    pub(crate) fn envelope(&self) -> Envelope {
        let mut prefix = b"{\"resourceLogs\":[{\"resource\":{\"attributes\":[".to_vec();
        for (i, (key, value)) in self.resource.iter().enumerate() {
            if i > 0 {
                prefix.push(b',');
            }
            key_value(&mut prefix, key, value);
        }
        prefix.extend_from_slice(b"]},\"scopeLogs\":[{\"scope\":{\"name\":\"vigil\",\"version\":");
        json_string(&mut prefix, env!("CARGO_PKG_VERSION"));
        prefix.extend_from_slice(b"},\"logRecords\":[");
        Envelope { prefix }
    }
}

impl fmt::Debug for OtlpLogs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpLogs")
            .field("resource", &self.resource)
            .field("map", &self.map.as_ref().map(|_| "<closure>"))
            .finish()
    }
}

/// Two configurations are equal when their resources are, and they share
/// the same mapping closure (or have none).
impl PartialEq for OtlpLogs {
    fn eq(&self, other: &OtlpLogs) -> bool {
        let same_map = match (&self.map, &other.map) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        self.resource == other.resource && same_map
    }
}

impl Eq for OtlpLogs {}

/// What comes after the last record of every batch body.
pub(crate) const SUFFIX: &[u8] = b"]}]}]}";

/// The part of a batch body before its first record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) prefix: Vec<u8>,
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn key_value(out: &mut Vec<u8>, key: &str, value: &Value) {
    out.extend_from_slice(b"{\"key\":");
    json_string(out, key);
    out.extend_from_slice(b",\"value\":");
    any_value(out, value);
    out.push(b'}');
}

/// Writes `value` as an OTLP `AnyValue`.
fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"{}"),
        Value::Bool(b) => {
            let _ = write!(out, "{{\"boolValue\":{b}}}");
        }
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{{\"intValue\":\"{i}\"}}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{{\"stringValue\":\"{u}\"}}");
            } else {
                out.extend_from_slice(b"{\"doubleValue\":");
                // A serde_json number is finite, so this is a JSON number.
                let _ = serde_json::to_writer(&mut *out, n);
                out.push(b'}');
            }
        }
        Value::String(s) => {
            out.extend_from_slice(b"{\"stringValue\":");
            json_string(out, s);
            out.push(b'}');
        }
        Value::Array(items) => {
            out.extend_from_slice(b"{\"arrayValue\":{\"values\":[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                any_value(out, item);
            }
            out.extend_from_slice(b"]}}");
        }
        Value::Object(map) => {
            out.extend_from_slice(b"{\"kvlistValue\":{\"values\":[");
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                key_value(out, key, item);
            }
            out.extend_from_slice(b"]}}");
        }
    }
}

fn default_service_name() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    format!("unknown_service:{exe}")
}

/// A random id in the UUID v4 layout, as the semantic conventions recommend
/// for `service.instance.id`.
fn random_instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let word = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u32(std::process::id());
        h.finish()
    };
    let (hi, lo) = (word(1), word(2));
    let hi = (hi & !0xf000) | 0x4000;
    let lo = (lo & !(0b11 << 62)) | (0b10 << 62);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

fn host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixed() -> OtlpLogs {
        OtlpLogs::new()
            .service_name("checkout")
            .service_instance_id("i-1")
            .host_name(Some("node-7".into()))
            .resource_attribute("deployment.environment.name", "test")
    }

    /// The golden test: a batch of three events, compared with an
    /// `ExportLogsServiceRequest` written by hand from the proto files and
    /// the JSON mapping (64-bit integers as strings, enums as integers,
    /// lowerCamelCase names, an empty `AnyValue` for null).
    #[test]
    fn golden_export_logs_service_request() {
        let nested = json!({
            "order": {"id": "A-17", "lines": [1, 2.5, "three", null, true, [], {}]},
            "big": u64::MAX,
            "min": i64::MIN,
            "neg": -1.25e-7,
            "ok": false,
            "none": null,
            "text": "grüße, 世界 🚀 \"quoted\"\n",
        });
        let otlp = fixed().map(|event| {
            if event.get("order").is_some() {
                LogFields::new()
                    .severity(Severity::WARN)
                    .event_name("order.placed")
                    .attribute("tenant", "acme")
                    .attribute("vigil.seq", 0)
                    .attribute("tenant", "ignored")
            } else {
                LogFields::new()
            }
        });
        let events = [nested, json!("plain"), json!(null)];
        let body = otlp
            .encode([
                (18_446_744_073_709_551_615, 1_700_000_000_123, &events[0]),
                (2, 0, &events[1]),
                (3, 5, &events[2]),
            ])
            .unwrap();
        let got: Value = serde_json::from_slice(&body).unwrap();
        let version = env!("CARGO_PKG_VERSION");
        let expected = r#"{
          "resourceLogs": [{
            "resource": {"attributes": [
              {"key": "service.name", "value": {"stringValue": "checkout"}},
              {"key": "service.instance.id", "value": {"stringValue": "i-1"}},
              {"key": "host.name", "value": {"stringValue": "node-7"}},
              {"key": "deployment.environment.name", "value": {"stringValue": "test"}}
            ]},
            "scopeLogs": [{
              "scope": {"name": "vigil", "version": "VERSION"},
              "logRecords": [
                {
                  "timeUnixNano": "1700000000123000000",
                  "observedTimeUnixNano": "1700000000123000000",
                  "severityNumber": 13,
                  "severityText": "WARN",
                  "eventName": "order.placed",
                  "body": {"kvlistValue": {"values": [
                    {"key": "big", "value": {"stringValue": "18446744073709551615"}},
                    {"key": "min", "value": {"intValue": "-9223372036854775808"}},
                    {"key": "neg", "value": {"doubleValue": -1.25e-7}},
                    {"key": "none", "value": {}},
                    {"key": "ok", "value": {"boolValue": false}},
                    {"key": "order", "value": {"kvlistValue": {"values": [
                      {"key": "id", "value": {"stringValue": "A-17"}},
                      {"key": "lines", "value": {"arrayValue": {"values": [
                        {"intValue": "1"},
                        {"doubleValue": 2.5},
                        {"stringValue": "three"},
                        {},
                        {"boolValue": true},
                        {"arrayValue": {"values": []}},
                        {"kvlistValue": {"values": []}}
                      ]}}}
                    ]}}},
                    {"key": "text", "value": {"stringValue": "grüße, 世界 🚀 \"quoted\"\n"}}
                  ]}},
                  "attributes": [
                    {"key": "vigil.seq", "value": {"stringValue": "18446744073709551615"}},
                    {"key": "tenant", "value": {"stringValue": "acme"}}
                  ]
                },
                {
                  "timeUnixNano": "0",
                  "observedTimeUnixNano": "0",
                  "severityNumber": 9,
                  "severityText": "INFO",
                  "body": {"stringValue": "plain"},
                  "attributes": [{"key": "vigil.seq", "value": {"intValue": "2"}}]
                },
                {
                  "timeUnixNano": "5000000",
                  "observedTimeUnixNano": "5000000",
                  "severityNumber": 9,
                  "severityText": "INFO",
                  "body": {},
                  "attributes": [{"key": "vigil.seq", "value": {"intValue": "3"}}]
                }
              ]
            }]
          }]
        }"#;
        let expected: Value = serde_json::from_str(&expected.replace("VERSION", version)).unwrap();
        // Field by field, so a difference names its path.
        assert_same(&got, &expected, "$");
        assert_eq!(got, expected);
    }

    fn assert_same(got: &Value, expected: &Value, path: &str) {
        match (got, expected) {
            (Value::Object(g), Value::Object(e)) => {
                let gk: Vec<&String> = g.keys().collect();
                let ek: Vec<&String> = e.keys().collect();
                assert_eq!(gk, ek, "keys at {path}");
                for (k, v) in e {
                    assert_same(&g[k], v, &format!("{path}.{k}"));
                }
            }
            (Value::Array(g), Value::Array(e)) => {
                assert_eq!(g.len(), e.len(), "length at {path}");
                for (i, (g, e)) in g.iter().zip(e).enumerate() {
                    assert_same(g, e, &format!("{path}[{i}]"));
                }
            }
            _ => assert_eq!(got, expected, "at {path}"),
        }
    }

    #[test]
    fn seq_attribute_is_an_int64_while_it_fits() {
        let attr = |seq: u64| {
            let mut out = Vec::new();
            fixed().encode_record(&mut out, seq, 1, &json!(1)).unwrap();
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["body"], json!({"intValue": "1"}));
            v["attributes"][0]["value"].clone()
        };
        assert_eq!(attr(i64::MAX as u64), json!({"intValue": "9223372036854775807"}));
        // Past i64 there is no intValue; the digits are kept exactly.
        assert_eq!(attr(i64::MAX as u64 + 1), json!({"stringValue": "9223372036854775808"}));
    }

    #[test]
    fn envelope_and_suffix_frame_records() {
        let otlp = fixed();
        let env = otlp.envelope();
        let mut body = env.prefix.clone();
        body.extend_from_slice(SUFFIX);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["resourceLogs"][0]["scopeLogs"][0]["logRecords"], json!([]));
        assert_eq!(v["resourceLogs"][0]["scopeLogs"][0]["scope"]["name"], "vigil");
    }

    #[test]
    fn failed_serialization_leaves_the_buffer_untouched() {
        let mut bad = std::collections::BTreeMap::new();
        bad.insert(vec![1u8], 1);
        let mut out = b"previous".to_vec();
        assert!(fixed().encode_record(&mut out, 1, 2, &bad).is_err());
        assert_eq!(out, b"previous");
    }

    #[test]
    fn defaults_name_the_service_and_instance() {
        let otlp = OtlpLogs::new();
        let key = |k: &str| otlp.resource().iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert!(key("service.name").unwrap().as_str().unwrap().starts_with("unknown_service:"));
        let id = key("service.instance.id").unwrap();
        let id = id.as_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4", "{id}");
        assert_ne!(OtlpLogs::new().resource()[1], otlp.resource()[1], "a new id every time");
        assert_eq!(otlp.clone().host_name(None).resource().iter().filter(|(k, _)| k == "host.name").count(), 0);
    }

    #[test]
    fn severity_names_follow_the_data_model() {
        let names: Vec<&str> = (1..=24).map(|n| Severity::from_number(n).unwrap().text()).collect();
        assert_eq!(names[0], "TRACE");
        assert_eq!(names[7], "DEBUG4");
        assert_eq!(names[8], "INFO");
        assert_eq!(names[23], "FATAL4");
        assert_eq!(Severity::from_number(25), None);
        assert_eq!(Severity::FATAL.number(), 21);
    }

    #[test]
    fn equality_compares_the_mapping_by_identity() {
        let a = fixed().map(|_| LogFields::new());
        assert_eq!(a, a.clone());
        assert_ne!(a, fixed().map(|_| LogFields::new()));
        assert_eq!(fixed(), fixed());
    }
}
