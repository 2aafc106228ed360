//! `/metrics`: the report as OpenMetrics text, written by prometheus-client.
//!
//! A registry is built from the latest report on each scrape: the figures
//! are the tree's and the ledger's own counters (monotonic, kept by the
//! tree), so nothing is counted twice and a scrape never blocks the tree.

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::monitor::HealthReport;

type Labels = Vec<(&'static str, String)>;

fn counter(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    registry.register(name, help, family.clone());
    family
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    registry.register(name, help, family.clone());
    family
}

fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The two text formats prometheus-client writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// OpenMetrics 1.0 (ends with `# EOF`), what Prometheus asks for.
    OpenMetrics,
    /// Prometheus's classic text format 0.0.4, for other clients.
    Prometheus,
}

/// The report in `format`.
pub(crate) fn encode(report: &HealthReport, format: Format) -> String {
    let mut registry = Registry::default();

    let health = gauge(&mut registry, "vigil_health", "1 for the tree's current health state");
    health.get_or_create(&vec![("state", report.health.name().to_owned())]).set(1);
    let live = gauge(&mut registry, "vigil_live", "1 while the process should be left running");
    live.get_or_create(&Labels::new()).set(i64::from(report.live));
    let ready = gauge(&mut registry, "vigil_ready", "1 while the process should get traffic");
    ready.get_or_create(&Labels::new()).set(i64::from(report.ready));

    let restarts = counter(&mut registry, "vigil_restarts", "Restarts by child path and class of exit reason");
    for r in &report.restarts {
        restarts.get_or_create(&vec![("path", r.path.clone()), ("reason", r.reason.clone())]).inc_by(r.count);
    }

    if let Some(tree) = &report.tree {
        let state = gauge(&mut registry, "vigil_child_state", "1 for each child's current state");
        let mailbox = gauge(&mut registry, "vigil_mailbox_length", "Messages waiting in each child's mailbox");
        let mut children = Vec::new();
        crate::model::collect(tree, &mut children);
        for child in children {
            let name = match child.state {
                vigil_core::ChildState::Starting => "starting",
                vigil_core::ChildState::Running => "running",
                vigil_core::ChildState::Restarting => "restarting",
                vigil_core::ChildState::Stopped => "stopped",
            };
            state.get_or_create(&vec![("path", child.path.clone()), ("state", name.to_owned())]).set(1);
            mailbox.get_or_create(&vec![("path", child.path.clone())]).set(int(child.mailbox_len));
        }
        let hangs = counter(&mut registry, "vigil_hangs", "Hangs the watchdog detected, tree-wide");
        hangs.get_or_create(&Labels::new()).inc_by(tree.hangs_total);
        let late = counter(&mut registry, "vigil_late_returns", "Hung threads whose hook returned after replacement");
        late.get_or_create(&Labels::new()).inc_by(tree.late_returns);
        let abandoned = gauge(&mut registry, "vigil_abandoned_threads", "Abandoned threads still running");
        abandoned.get_or_create(&Labels::new()).set(int(tree.abandoned_threads.len()));
    }

    #[cfg(feature = "events")]
    if let Some(ledger) = &report.events {
        use vigil_events::DropReason;
        let accepted = counter(&mut registry, "vigil_events_accepted", "Events the pipeline accepted");
        accepted.get_or_create(&Labels::new()).inc_by(ledger.accepted);
        let delivered = counter(&mut registry, "vigil_events_delivered", "Events the sink acknowledged");
        delivered.get_or_create(&Labels::new()).inc_by(ledger.delivered);
        let dropped = counter(&mut registry, "vigil_events_dropped", "Events dropped, by reason");
        for reason in DropReason::ALL {
            dropped.get_or_create(&vec![("reason", reason.as_str().to_owned())]).inc_by(ledger.dropped.get(reason));
        }
        let pending = gauge(&mut registry, "vigil_events_pending", "Events accepted and not yet settled");
        pending.get_or_create(&Labels::new()).set(int(ledger.pending));
    }

    #[cfg(feature = "https")]
    if !report.https.is_empty() {
        let attempts = counter(&mut registry, "vigil_delivery_attempts", "HTTPS delivery attempts by outcome");
        let days = gauge(&mut registry, "vigil_certificate_days_left", "Whole days until a certificate expires");
        for figures in &report.https {
            let endpoint = figures.stats.endpoint.clone();
            let d = figures.stats.deliveries;
            for (outcome, n) in [
                ("delivered", d.delivered),
                ("retryable", d.retryable),
                ("too_large", d.too_large),
                ("rejected", d.rejected),
                ("fatal", d.fatal),
                ("partially_rejected", d.partially_rejected),
            ] {
                attempts
                    .get_or_create(&vec![("endpoint", endpoint.clone()), ("outcome", outcome.to_owned())])
                    .inc_by(n);
            }
            let r = &figures.readiness;
            let mut certs: Vec<(&str, &vigil_https::CertificateStatus)> = Vec::new();
            for (i, cert) in r.served_chain.iter().enumerate() {
                certs.push((if i == 0 { "leaf" } else { "intermediate" }, cert));
            }
            certs.extend(r.anchor.iter().map(|c| ("anchor", c)));
            certs.extend(r.client_identity.iter().map(|c| ("client", c)));
            if let Some(trust) = &r.trust {
                certs.extend(trust.anchors.iter().map(|a| ("trusted", &a.status)));
            }
            for (role, cert) in certs {
                let labels = vec![
                    ("endpoint", endpoint.clone()),
                    ("role", role.to_owned()),
                    ("subject", cert.certificate.subject.clone()),
                ];
                days.get_or_create(&labels).set(cert.days_left);
            }
        }
    }

    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = match format {
        Format::OpenMetrics => text::encode(&mut out, &registry),
        Format::Prometheus => prometheus_text::encode(&mut out, &registry),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::RestartCount;

    #[test]
    fn restarts_are_a_counter_family_with_path_and_reason() {
        let mut report = HealthReport::starting();
        report.restarts = vec![RestartCount { path: "root/w".into(), reason: "panicked".into(), count: 3 }];
        let text = encode(&report, Format::OpenMetrics);
        assert!(text.contains("# TYPE vigil_restarts counter"), "{text}");
        assert!(text.contains(r#"vigil_restarts_total{path="root/w",reason="panicked"} 3"#), "{text}");
        assert!(text.contains(r#"vigil_health{state="starting"} 1"#), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
