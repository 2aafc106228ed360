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

/// The naive design's figures.
#[derive(Debug, Serialize)]
pub(crate) struct NaiveFigures {
    #[serde(flatten)]
    pub(crate) requests: RequestFigures,
    /// Times the process died and was restarted by the process manager.
    pub(crate) crashes: usize,
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

/// Everything the run measured.
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
    pub(crate) tls_failures: u64,
    pub(crate) cert_rotations: u64,
    pub(crate) server_certificate: Option<String>,
    pub(crate) restarts: Vec<RestartSummary>,
    pub(crate) timeline: Phases,
    pub(crate) duration_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) naive: Option<NaiveFigures>,
}

/// When the scripted phases began, in seconds since the start.
#[derive(Debug, Serialize, Default, Clone, Copy)]
pub(crate) struct Phases {
    pub(crate) rotation_s: Option<f64>,
    pub(crate) fix_s: Option<f64>,
    pub(crate) drained_s: Option<f64>,
    pub(crate) load_end_s: f64,
}

impl Report {
    /// The report as a table for people.
    pub(crate) fn print_table(&self) {
        let row = |name: &str, value: String| println!("  {name:<34} {value}");
        println!();
        println!("== Incident replay: {:.1} s", self.duration_s);
        println!();
        let vigil = format!("{} / {}", self.requests.requests_failed, self.requests.requests_total);
        match &self.naive {
            Some(naive) => {
                println!("  {:<34} {:>18} {:>18}", "requests", "Vigil", "naive");
                println!(
                    "  {:<34} {:>18} {:>18}",
                    "failed / total",
                    vigil,
                    format!("{} / {}", naive.requests.requests_failed, naive.requests.requests_total)
                );
                println!(
                    "  {:<34} {:>18} {:>18}",
                    "latency p50 / p99 / max (ms)",
                    self.requests.latencies(),
                    naive.requests.latencies()
                );
                println!("  {:<34} {:>18} {:>18}", "process crashes", 0, naive.crashes);
                if let Some(error) = &naive.requests.first_error {
                    println!("  {:<34} {error}", "naive's first failed request");
                }
            }
            None => {
                row("requests failed / total", vigil);
                row("latency p50 / p99 / max (ms)", self.requests.latencies());
            }
        }
        if let Some(error) = &self.requests.first_error {
            row("Vigil's first failed request", error.clone());
        }
        if let (Some(healthy), Some(outage)) = (self.latency_p99_healthy_ms, self.latency_p99_outage_ms) {
            row("latency p99 healthy / outage", format!("{healthy:.1} ms / {outage:.1} ms"));
        }
        println!();
        row("events emitted", self.events_emitted.to_string());
        row("events delivered", self.events_delivered.to_string());
        let by_reason: Vec<String> =
            self.events_dropped_by_reason.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r}={n}")).collect();
        row(
            "events dropped",
            if by_reason.is_empty() {
                "0".into()
            } else {
                format!("{} ({})", self.events_dropped, by_reason.join(", "))
            },
        );
        row("events pending", self.events_pending.to_string());
        row("ledger balanced", self.ledger_balanced.to_string());
        if let Some(unique) = self.collector_unique_events {
            row("unique events at the collector", unique.to_string());
        }
        println!();
        row("batcher restarts", self.batcher_restarts.to_string());
        row("TLS failures", self.tls_failures.to_string());
        row("certificate rotations seen", self.cert_rotations.to_string());
        if let Some(cert) = &self.server_certificate {
            row("server certificate now", cert.clone());
        }
        if let (Some(rotation), Some(fix)) = (self.timeline.rotation_s, self.timeline.fix_s) {
            let drained = self.timeline.drained_s.map_or("not drained".to_owned(), |d| format!("{d:.1} s"));
            row("rotation / fix / backlog drained", format!("{rotation:.1} s / {fix:.1} s / {drained}"));
        }
        if !self.restarts.is_empty() {
            println!();
            println!("  supervision log, restart lines summarised:");
            for r in &self.restarts {
                println!("    {}× {} ({:.1}–{:.1} s): {}", r.count, r.path, r.first_s, r.last_s, r.reason);
            }
        }
        println!();
    }
}

/// One point of the timeline.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Point {
    pub(crate) t: f64,
    pub(crate) requests_per_s: f64,
    pub(crate) failed_per_s: f64,
    pub(crate) delivered_per_s: f64,
    pub(crate) buffered: u64,
}

/// Markers on the timeline, in seconds.
#[derive(Debug, Default, Clone)]
pub(crate) struct Markers {
    pub(crate) rotation: Option<f64>,
    pub(crate) fix: Option<f64>,
    pub(crate) restarts: Vec<f64>,
    pub(crate) naive_crashes: Vec<f64>,
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Draws the timeline as an SVG: requests, deliveries and the backlog, with
/// the rotation, the fix, the restarts and the naive crashes marked.
pub(crate) fn plot(
    path: &Path,
    points: &[Point],
    markers: &Markers,
    naive: Option<(&[Point], &Markers)>,
) -> Result<(), Box<dyn std::error::Error>> {
    let end = points.last().map_or(1.0, |p| p.t).max(1.0);
    let naive_points: &[Point] = naive.map_or(&[], |(p, _)| p);
    let crashes: &[f64] = naive.map_or(&[], |(_, m)| &m.naive_crashes);
    let root = SVGBackend::new(path, (1100, 860)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(50);
    title.draw(&Text::new(
        "Vigil incident replay: certificate rotation, outage, operator fix",
        (20, 15),
        ("sans-serif", 22).into_font(),
    ))?;
    let panels = body.split_evenly((3, 1));

    let max_rps = points.iter().chain(naive_points).map(|p| p.requests_per_s).fold(1.0, f64::max) * 1.7;
    let max_delivered = points.iter().map(|p| p.delivered_per_s).fold(1.0, f64::max) * 1.1;
    let max_buffered = points.iter().map(|p| p.buffered as f64).fold(1.0, f64::max) * 1.1;

    let mark = |chart: &mut Chart<'_, '_>, top: f64, with_crashes: bool| -> Result<(), Box<dyn std::error::Error>> {
        let vline = |x: f64, color: RGBColor| PathElement::new(vec![(x, 0.0), (x, top)], color.stroke_width(2));
        if let Some(x) = markers.rotation {
            chart
                .draw_series(std::iter::once(vline(x, RED)))?
                .label("CA rotated")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.stroke_width(2)));
        }
        if let Some(x) = markers.fix {
            chart
                .draw_series(std::iter::once(vline(x, GREEN)))?
                .label("operator fix")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREEN.stroke_width(2)));
        }
        chart
            .draw_series(markers.restarts.iter().map(|&x| TriangleMarker::new((x, top * 0.95), 6, MAGENTA.filled())))?
            .label("batcher restart")
            .legend(|(x, y)| TriangleMarker::new((x + 8, y), 5, MAGENTA.filled()));
        if naive.is_some() && with_crashes {
            chart
                .draw_series(crashes.iter().map(|&x| Cross::new((x, top * 0.85), 5, BLACK.stroke_width(2))))?
                .label("naive process crash")
                .legend(|(x, y)| Cross::new((x + 8, y), 4, BLACK.stroke_width(2)));
        }
        Ok(())
    };

    let mut requests = ChartBuilder::on(&panels[0])
        .margin(10)
        .x_label_area_size(25)
        .y_label_area_size(60)
        .caption("requests per second: answered, and failed", ("sans-serif", 16))
        .build_cartesian_2d(0.0..end, 0.0..max_rps)?;
    requests.configure_mesh().light_line_style(WHITE.mix(0.0)).draw()?;
    let answered = |p: &Point| (p.t, p.requests_per_s - p.failed_per_s);
    requests
        .draw_series(LineSeries::new(points.iter().map(answered), BLUE.stroke_width(2)))?
        .label("Vigil: answered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    requests
        .draw_series(LineSeries::new(points.iter().map(|p| (p.t, p.failed_per_s)), RED.stroke_width(3)))?
        .label("Vigil: failed")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.stroke_width(3)));
    if naive.is_some() {
        requests
            .draw_series(LineSeries::new(naive_points.iter().map(answered), CYAN.stroke_width(2)))?
            .label("naive: answered")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], CYAN.stroke_width(2)));
        requests
            .draw_series(LineSeries::new(
                naive_points.iter().map(|p| (p.t, p.failed_per_s)),
                RGBColor(255, 140, 0).stroke_width(3),
            ))?
            .label("naive: failed")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RGBColor(255, 140, 0).stroke_width(3)));
    }
    mark(&mut requests, max_rps, true)?;
    requests.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;

    let mut delivered = ChartBuilder::on(&panels[1])
        .margin(10)
        .x_label_area_size(25)
        .y_label_area_size(60)
        .caption("events delivered per second", ("sans-serif", 16))
        .build_cartesian_2d(0.0..end, 0.0..max_delivered)?;
    delivered.configure_mesh().light_line_style(WHITE.mix(0.0)).draw()?;
    delivered.draw_series(
        AreaSeries::new(points.iter().map(|p| (p.t, p.delivered_per_s)), 0.0, GREEN.mix(0.3)).border_style(GREEN),
    )?;
    mark(&mut delivered, max_delivered, false)?;

    let mut buffered = ChartBuilder::on(&panels[2])
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .caption("events buffered (pending)", ("sans-serif", 16))
        .build_cartesian_2d(0.0..end, 0.0..max_buffered)?;
    buffered.configure_mesh().x_desc("seconds since start").light_line_style(WHITE.mix(0.0)).draw()?;
    buffered.draw_series(
        AreaSeries::new(points.iter().map(|p| (p.t, p.buffered as f64)), 0.0, RGBColor(128, 0, 128).mix(0.3))
            .border_style(RGBColor(128, 0, 128)),
    )?;
    mark(&mut buffered, max_buffered, false)?;

    root.present()?;
    Ok(())
}

/// Seconds, for reports.
pub(crate) fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}
