//! The end-of-run report (table and JSON) and the timeline plot.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;
use serde::Serialize;

/// The request side of one service.
#[derive(Debug, Serialize)]
pub(crate) struct RequestFigures {
    pub(crate) requests_total: u64,
    pub(crate) requests_failed: u64,
    pub(crate) latency_p50_ms: f64,
    pub(crate) latency_p99_ms: f64,
    pub(crate) latency_max_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) first_error: Option<String>,
}

impl RequestFigures {
    fn latencies(&self) -> String {
        format!("{:.1} / {:.1} / {:.0}", self.latency_p50_ms, self.latency_p99_ms, self.latency_max_ms)
    }
}

/// The naive design's figures. Its events are counted from the outside:
/// one per answered request, delivered as the collector counts them.
#[derive(Debug, Serialize)]
pub(crate) struct NaiveFigures {
    #[serde(flatten)]
    pub(crate) requests: RequestFigures,
    /// Times the process died and was restarted by the process manager.
    pub(crate) crashes: usize,
    pub(crate) events_emitted: u64,
    pub(crate) events_delivered: u64,
    /// Answered requests whose event never reached the collector.
    pub(crate) events_lost: u64,
    pub(crate) duration_s: f64,
    /// `--crash`: what the kill cost it.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) crash: Option<crate::crash::CrashFigures>,
}

/// A group of restart lines with the same reason.
#[derive(Debug, Serialize)]
pub(crate) struct RestartSummary {
    pub(crate) path: String,
    pub(crate) count: u64,
    pub(crate) reason: String,
    pub(crate) first_s: f64,
    pub(crate) last_s: f64,
}

/// Everything the run measured. The top-level keys are Vigil's; the naive
/// design's figures are in `naive`.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    #[serde(flatten)]
    pub(crate) requests: RequestFigures,
    /// Scripted runs only: p99 before the rotation, and between rotation and fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) latency_p99_healthy_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) latency_p99_outage_ms: Option<f64>,
    pub(crate) events_emitted: u64,
    pub(crate) events_delivered: u64,
    pub(crate) events_dropped: u64,
    pub(crate) events_dropped_by_reason: BTreeMap<String, u64>,
    pub(crate) events_pending: u64,
    pub(crate) ledger_balanced: bool,
    pub(crate) collector_unique_events: Option<u64>,
    pub(crate) batcher_restarts: u64,
    /// `--hang`: hangs the watchdog detected (0 without `--hang`).
    pub(crate) hangs_detected: u64,
    /// Abandoned threads still running when the tree shut down (a hung
    /// batcher's, while the collector still held its connection).
    pub(crate) abandoned_threads: usize,
    /// Whether `--hang` scripted a hang phase, which the watchdog must see.
    #[serde(skip)]
    pub(crate) hang_phase: bool,
    pub(crate) tls_failures: u64,
    pub(crate) cert_rotations: u64,
    pub(crate) server_certificate: Option<String>,
    /// The HTTPS sink's last error, if any (the cause when events were lost).
    pub(crate) last_sink_error: Option<String>,
    pub(crate) restarts: Vec<RestartSummary>,
    /// The readiness report taken before the outage, when a rotation was announced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) readiness_before_outage: Option<vigil::https::Readiness>,
    pub(crate) timeline: Phases,
    pub(crate) duration_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) naive: Option<NaiveFigures>,
    /// `--crash`: what the kill cost Vigil (`events_lost_in_crash`, `events_recovered`, ...).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) crash: Option<crate::crash::CrashFigures>,
    /// The plot that could not be written, and why.
    #[serde(skip)]
    pub(crate) plot_error: Option<(std::path::PathBuf, String)>,
    /// Vigil's health as the engines outside saw it, each change once
    /// (examples/incident/health.rs).
    pub(crate) health_transitions: Vec<crate::health::Transition>,
}

/// When the scripted phases began, in seconds since the start.
#[derive(Debug, Serialize, Default, Clone, Copy)]
pub(crate) struct Phases {
    /// When the rotation was announced (the replay opens with it).
    pub(crate) announced_s: Option<f64>,
    pub(crate) rotation_s: Option<f64>,
    pub(crate) fix_s: Option<f64>,
    /// Seconds from the fix to the first event delivered after it.
    pub(crate) first_delivery_after_fix_s: Option<f64>,
    pub(crate) drained_s: Option<f64>,
    pub(crate) load_end_s: f64,
}

/// `1530` as `1,530`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `text` cut to at most `width` characters at a word boundary, with `…`;
/// its indentation is kept.
pub(crate) fn ellipsize(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let body = text.trim_start_matches(' ');
    let mut out = " ".repeat(text.len() - body.len());
    let indent = out.len();
    for word in body.split(' ') {
        let space = usize::from(out.len() > indent);
        if out.chars().count() + space + word.chars().count() + 2 > width {
            break;
        }
        if space == 1 {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.push_str(" …");
    out
}

impl Report {
    /// Vigil's events not delivered: dropped, or still pending at the end.
    pub(crate) fn events_lost(&self) -> u64 {
        self.events_emitted.saturating_sub(self.events_delivered)
    }

    /// Every event Vigil lost: [`events_lost`](Self::events_lost), and with
    /// `--crash` what the kill took, which no ledger knows.
    pub(crate) fn events_lost_all(&self) -> u64 {
        self.events_lost() + self.crash.as_ref().map_or(0, |c| c.events_lost_in_crash)
    }

    /// What Vigil promised and did not keep, one sentence each; empty when
    /// every request was answered and every event delivered.
    pub(crate) fn shortfalls(&self) -> Vec<String> {
        let mut out = Vec::new();
        // --crash: requests sent while the process was down fail; the crash's own line tells its cost.
        let in_crash = self.crash.as_ref().map_or(0, |c| c.requests_failed_in_crash);
        out.extend(self.crash.as_ref().and_then(crate::crash::CrashFigures::shortfall));
        if self.requests.requests_failed > in_crash {
            out.push(format!(
                "{} of {} requests failed; the first: {}",
                self.requests.requests_failed,
                self.requests.requests_total,
                self.requests.first_error.as_deref().unwrap_or("no error recorded"),
            ));
        }
        if self.hang_phase && self.hangs_detected == 0 {
            out.push("the collector hung (--hang) but the watchdog detected no hang of the batcher".to_owned());
        }
        if self.events_lost() > 0 || !self.ledger_balanced {
            let by_reason: Vec<String> = self
                .events_dropped_by_reason
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(r, n)| format!("{r}={n}"))
                .collect();
            out.push(format!(
                "not every event was delivered: {} of {} delivered, {} dropped{}, {} pending{}; the sink's last \
                 error: {}",
                self.events_delivered,
                self.events_emitted,
                self.events_dropped,
                if by_reason.is_empty() { String::new() } else { format!(" ({})", by_reason.join(", ")) },
                self.events_pending,
                if self.ledger_balanced { "" } else { "; the ledger does not balance" },
                self.last_sink_error.as_deref().unwrap_or("none"),
            ));
        }
        out
    }

    /// The one-line verdict.
    pub(crate) fn verdict(&self) -> String {
        let mut line = format!(
            "Vigil: {} of {} requests failed, {} events lost.",
            thousands(self.requests.requests_failed),
            thousands(self.requests.requests_total),
            thousands(self.events_lost_all()),
        );
        if let Some(crash) = &self.crash {
            line.push_str(&crate::crash::verdict(crash));
        }
        if let Some(naive) = &self.naive {
            line.push_str(&format!(
                " Naive: {} failed, {} crashes, {} events lost.",
                thousands(naive.requests.requests_failed),
                thousands(naive.crashes as u64),
                thousands(naive.events_lost),
            ));
        }
        line
    }

    /// The report as a table for people: one column per design, the
    /// verdict, and what to try next. Long lines are shortened to `width`
    /// (the terminal's, when stdout is one); `--json` keeps the full text.
    pub(crate) fn print_table(&self, width: Option<usize>) {
        let width = width.unwrap_or(usize::MAX).max(40);
        let naive = self.naive.as_ref();
        let row = |name: &str, vigil: String, other: Option<String>| match naive {
            Some(_) => println!("  {name:<32} {vigil:>18} {:>18}", other.unwrap_or_else(|| "-".into())),
            None => println!("  {name:<32} {vigil:>18}"),
        };
        let long = |text: String| println!("{}", ellipsize(&text, width));
        println!();
        match naive {
            Some(n) => {
                println!(
                    "== Incident replay: Vigil {:.1} s, then the naive design {:.1} s",
                    self.duration_s, n.duration_s
                );
                println!();
                println!("  {:<32} {:>18} {:>18}", "", "Vigil", "naive");
            }
            None => {
                println!("== Incident replay: Vigil {:.1} s", self.duration_s);
                println!();
            }
        }
        let failed_total = |r: &RequestFigures| format!("{} / {}", r.requests_failed, r.requests_total);
        row("requests failed / total", failed_total(&self.requests), naive.map(|n| failed_total(&n.requests)));
        row("latency p50 / p99 / max (ms)", self.requests.latencies(), naive.map(|n| n.requests.latencies()));
        if let (Some(healthy), Some(outage)) = (self.latency_p99_healthy_ms, self.latency_p99_outage_ms) {
            row("p99 healthy / outage (ms)", format!("{healthy:.1} / {outage:.1}"), None);
        }
        row("process crashes", u8::from(self.crash.is_some()).to_string(), naive.map(|n| n.crashes.to_string()));
        row("batcher restarts", self.batcher_restarts.to_string(), None);
        if self.hangs_detected > 0 || self.abandoned_threads > 0 {
            row("hangs detected / threads left", format!("{} / {}", self.hangs_detected, self.abandoned_threads), None);
        }
        println!();
        row("events emitted", self.events_emitted.to_string(), naive.map(|n| n.events_emitted.to_string()));
        row("events delivered", self.events_delivered.to_string(), naive.map(|n| n.events_delivered.to_string()));
        row("events lost", self.events_lost_all().to_string(), naive.map(|n| n.events_lost.to_string()));
        if let Some(crash) = &self.crash {
            crate::crash::rows(crash, naive.and_then(|n| n.crash.as_ref()), &row);
        }
        let by_reason: Vec<String> =
            self.events_dropped_by_reason.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r}={n}")).collect();
        if !by_reason.is_empty() {
            row("  of which dropped", by_reason.join(", "), None);
        }
        row("events pending", self.events_pending.to_string(), None);
        row("ledger balanced", self.ledger_balanced.to_string(), None);
        if let Some(unique) = self.collector_unique_events {
            row("unique events at the collector", unique.to_string(), naive.map(|n| n.events_delivered.to_string()));
        }
        println!();
        row("TLS failures", self.tls_failures.to_string(), None);
        row("certificate rotations seen", self.cert_rotations.to_string(), None);
        if let (Some(rotation), Some(fix)) = (self.timeline.rotation_s, self.timeline.fix_s) {
            row("CA rotation / operator fix (s)", format!("{rotation:.1} / {fix:.1}"), None);
            let first = self.timeline.first_delivery_after_fix_s.map_or("none".to_owned(), |d| format!("{d:.2} s"));
            row("first delivery after the fix", first, None);
            let drained = self.timeline.drained_s.map_or("not drained".to_owned(), |d| format!("{d:.1} s"));
            row("Vigil's backlog drained at", drained, None);
        }
        if let Some(readiness) = &self.readiness_before_outage {
            println!();
            println!("  Announced at the start; before the outage the readiness report said");
            println!("  (the whole report: --json, or the rotation-check example):");
            let text = readiness.to_string();
            // The verdict, its reasons and the rotations; not every certificate.
            let brief =
                text.lines().filter(|l| !l.starts_with("  ") || l.starts_with("  !") || l.starts_with("  rotation"));
            for line in brief {
                long(format!("  {line}"));
            }
        }
        if let Some(cert) = &self.server_certificate {
            long(format!("  server certificate now: {cert}"));
        }
        if let Some(error) = naive.and_then(|n| n.requests.first_error.as_ref()) {
            long(format!("  naive's first failed request: {error}"));
        }
        if let Some(error) = &self.requests.first_error {
            long(format!("  Vigil's first failed request: {error}"));
        }
        if !self.restarts.is_empty() {
            println!();
            println!("  Vigil's restarts, in order (full text in --json):");
            for r in &self.restarts {
                let when = if r.count == 1 {
                    format!("{:.1} s", r.first_s)
                } else {
                    format!("{:.1}–{:.1} s, {}×", r.first_s, r.last_s, r.count)
                };
                println!("    {when} {}", r.path);
                long(format!("      {}", r.reason));
            }
        }
        println!();
        println!("{}", self.verdict());
        println!();
        println!("Try next: --plot timeline.svg to draw this run;");
        println!("          RUST_LOG=vigil=info to see each restart as it happens;");
        if naive.is_none() {
            println!("          without --vigil-only, to run the naive design for contrast;");
        }
        println!("          --help for every option.");
    }
}

/// One point of the timeline.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Point {
    pub(crate) t: f64,
    pub(crate) requests_per_s: f64,
    pub(crate) failed_per_s: f64,
    pub(crate) delivered_per_s: f64,
    /// Events emitted and not (yet) delivered: Vigil's buffer and drops, or
    /// the naive design's lost events.
    pub(crate) undelivered: u64,
}

/// Markers on the timeline, in seconds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Markers {
    pub(crate) announced: Option<f64>,
    /// When the readiness report said the host was not ready for the rotation.
    pub(crate) not_ready: Option<f64>,
    pub(crate) rotation: Option<f64>,
    pub(crate) fix: Option<f64>,
    /// `--crash`: when the service process was killed.
    pub(crate) crash: Option<f64>,
    pub(crate) restarts: Vec<f64>,
    pub(crate) naive_crashes: Vec<f64>,
    /// `--hang`: when the collector stopped answering, and answered again.
    pub(crate) hang: Option<(f64, Option<f64>)>,
    /// Hangs the watchdog detected.
    pub(crate) hangs: Vec<f64>,
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

// One colour per thing shown: Vigil blue and red, naive teal and orange,
// markers in colours no series uses.
const VIGIL: RGBColor = RGBColor(31, 90, 200);
const VIGIL_FAILED: RGBColor = RGBColor(220, 30, 30);
const NAIVE: RGBColor = RGBColor(0, 150, 150);
const NAIVE_FAILED: RGBColor = RGBColor(255, 140, 0);
const ROTATION: RGBColor = RGBColor(90, 90, 90);
const FIX: RGBColor = RGBColor(0, 150, 0);
const ANNOUNCED: RGBColor = RGBColor(150, 60, 200);
const NOT_READY: RGBColor = RGBColor(200, 0, 120);
const RESTART: RGBColor = RGBColor(200, 0, 200);
const CRASH: RGBColor = RGBColor(0, 0, 0);
const HANG: RGBColor = RGBColor(150, 90, 0);
const KILLED: RGBColor = RGBColor(120, 0, 0);

/// Draws the timeline as an SVG: requests, deliveries and the events not
/// delivered, with the rotation, the fix, every batcher restart and every
/// naive crash marked.
pub(crate) fn plot(
    path: &Path,
    points: &[Point],
    markers: &Markers,
    naive: Option<(&[Point], &Markers)>,
) -> Result<(), Box<dyn std::error::Error>> {
    let naive_points: &[Point] = naive.map_or(&[], |(p, _)| p);
    let crashes: &[f64] = naive.map_or(&[], |(_, m)| &m.naive_crashes);
    // Wide enough for every point and every marker (a restart during the
    // final flush comes after the last point).
    let end = points
        .iter()
        .chain(naive_points)
        .map(|p| p.t)
        .chain(markers.restarts.iter().copied())
        .chain(crashes.iter().copied())
        .fold(1.0, f64::max)
        * 1.02;
    let root = SVGBackend::new(path, (1100, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(50);
    let crash = if markers.crash.is_some() { ", the service killed (SIGKILL)" } else { "" };
    title.draw(&Text::new(
        format!("Vigil incident replay: certificate rotation, outage{crash}, operator fix"),
        (20, 15),
        ("sans-serif", 22).into_font(),
    ))?;
    let panels = body.split_evenly((3, 1));

    let max_rps = points.iter().chain(naive_points).map(|p| p.requests_per_s).fold(1.0, f64::max) * 1.7;
    let max_delivered = points.iter().chain(naive_points).map(|p| p.delivered_per_s).fold(1.0, f64::max) * 1.5;
    let max_undelivered = points.iter().chain(naive_points).map(|p| p.undelivered as f64).fold(1.0, f64::max) * 1.5;

    let legend = |color: RGBColor, width: u32| {
        move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(width))
    };
    let mark = |chart: &mut Chart<'_, '_>, top: f64, labels: bool| -> Result<(), Box<dyn std::error::Error>> {
        let vline = |x: f64, color: RGBColor| PathElement::new(vec![(x, 0.0), (x, top)], color.stroke_width(2));
        if let Some(x) = markers.announced {
            let series = chart.draw_series(std::iter::once(vline(x, ANNOUNCED)))?;
            if labels {
                series.label("rotation announced").legend(legend(ANNOUNCED, 2));
            }
        }
        if let Some(x) = markers.not_ready {
            let series = chart.draw_series(std::iter::once(Circle::new((x, top * 0.85), 6, NOT_READY.filled())))?;
            if labels {
                series.label("readiness: not ready").legend(|(x, y)| Circle::new((x + 8, y), 5, NOT_READY.filled()));
            }
        }
        if let Some(x) = markers.rotation {
            let series = chart.draw_series(std::iter::once(vline(x, ROTATION)))?;
            if labels {
                series.label("CA rotated").legend(legend(ROTATION, 2));
            }
        }
        if let Some(x) = markers.fix {
            let series = chart.draw_series(std::iter::once(vline(x, FIX)))?;
            if labels {
                series.label("operator fix").legend(legend(FIX, 2));
            }
        }
        if let Some(x) = markers.crash {
            let series = chart.draw_series(std::iter::once(vline(x, KILLED)))?;
            if labels {
                series.label("service killed (SIGKILL), restarted").legend(legend(KILLED, 2));
            }
        }
        if let Some((from, to)) = markers.hang {
            let series = chart.draw_series(std::iter::once(vline(from, HANG)))?;
            if labels {
                series.label("collector hangs (--hang)").legend(legend(HANG, 2));
            }
            if let Some(to) = to {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(to, 0.0), (to, top)],
                    HANG.mix(0.5).stroke_width(2),
                )))?;
            }
            let series =
                chart.draw_series(markers.hangs.iter().map(|&x| Circle::new((x, top * 0.8), 5, HANG.filled())))?;
            if labels {
                series
                    .label(format!("watchdog: batcher hung, replaced ({})", markers.hangs.len()))
                    .legend(|(x, y)| Circle::new((x + 8, y), 4, HANG.filled()));
            }
        }
        // One marker per restart; restarts close together are stacked so
        // that none hides another.
        let mut placed: Vec<(f64, usize)> = Vec::new();
        let restarts: Vec<(f64, f64)> = markers
            .restarts
            .iter()
            .map(|&x| {
                let level = placed.iter().filter(|(other, _)| (x - other).abs() < end / 80.0).count();
                placed.push((x, level));
                (x, top * (0.95 - 0.07 * level as f64))
            })
            .collect();
        let series = chart.draw_series(restarts.iter().map(|&at| TriangleMarker::new(at, 6, RESTART.filled())))?;
        if labels {
            series
                .label(format!("Vigil batcher restart ({})", markers.restarts.len()))
                .legend(|(x, y)| TriangleMarker::new((x + 8, y), 5, RESTART.filled()));
        }
        if naive.is_some() {
            let series =
                chart.draw_series(crashes.iter().map(|&x| Cross::new((x, top * 0.6), 5, CRASH.stroke_width(2))))?;
            if labels {
                series
                    .label(format!("naive process crash ({})", crashes.len()))
                    .legend(|(x, y)| Cross::new((x + 8, y), 4, CRASH.stroke_width(2)));
            }
        }
        Ok(())
    };
    let mut requests = panel(&panels[0], end, "requests per second: answered, and failed", max_rps, "requests/s")?;
    let answered = |p: &Point| (p.t, p.requests_per_s - p.failed_per_s);
    requests
        .draw_series(LineSeries::new(points.iter().map(answered), VIGIL.stroke_width(2)))?
        .label("Vigil: answered")
        .legend(legend(VIGIL, 2));
    requests
        .draw_series(LineSeries::new(points.iter().map(|p| (p.t, p.failed_per_s)), VIGIL_FAILED.stroke_width(3)))?
        .label("Vigil: failed")
        .legend(legend(VIGIL_FAILED, 3));
    if naive.is_some() {
        requests
            .draw_series(LineSeries::new(naive_points.iter().map(answered), NAIVE.stroke_width(2)))?
            .label("naive: answered")
            .legend(legend(NAIVE, 2));
        requests
            .draw_series(LineSeries::new(
                naive_points.iter().map(|p| (p.t, p.failed_per_s)),
                NAIVE_FAILED.stroke_width(3),
            ))?
            .label("naive: failed")
            .legend(legend(NAIVE_FAILED, 3));
    }
    mark(&mut requests, max_rps, true)?;
    requests.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;

    let mut delivered =
        panel(&panels[1], end, "events delivered to the collector per second", max_delivered, "events/s")?;
    delivered
        .draw_series(
            AreaSeries::new(points.iter().map(|p| (p.t, p.delivered_per_s)), 0.0, VIGIL.mix(0.25)).border_style(VIGIL),
        )?
        .label("Vigil: delivered")
        .legend(legend(VIGIL, 2));
    if naive.is_some() {
        delivered
            .draw_series(LineSeries::new(naive_points.iter().map(|p| (p.t, p.delivered_per_s)), NAIVE.stroke_width(2)))?
            .label("naive: delivered")
            .legend(legend(NAIVE, 2));
    }
    mark(&mut delivered, max_delivered, false)?;
    delivered.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;

    let mut undelivered = panel(
        &panels[2],
        end,
        "events emitted but not delivered (Vigil: buffered, then drained; naive: lost)",
        max_undelivered,
        "events",
    )?;
    undelivered
        .draw_series(
            AreaSeries::new(points.iter().map(|p| (p.t, p.undelivered as f64)), 0.0, VIGIL.mix(0.25))
                .border_style(VIGIL),
        )?
        .label("Vigil: buffered or lost")
        .legend(legend(VIGIL, 2));
    if naive.is_some() {
        undelivered
            .draw_series(LineSeries::new(
                naive_points.iter().map(|p| (p.t, p.undelivered as f64)),
                NAIVE_FAILED.stroke_width(3),
            ))?
            .label("naive: lost (answered, never delivered)")
            .legend(legend(NAIVE_FAILED, 3));
    }
    mark(&mut undelivered, max_undelivered, false)?;
    undelivered.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;

    root.present()?;
    Ok(())
}

/// One panel of the plot, its axes labelled with their units.
fn panel<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    end: f64,
    caption: &str,
    top: f64,
    unit: &str,
) -> Result<Chart<'a, 'b>, Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .caption(caption, ("sans-serif", 16))
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc(unit)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    Ok(chart)
}

/// Seconds, for reports.
pub(crate) fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}
