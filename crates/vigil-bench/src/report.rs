//! Figures, their references and targets, and how a run is rendered as JSON
//! or as a table.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::stats::Summary;

/// What a reference measurement is to a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The raw limit the figure's `ratio_to_baseline` is taken against.
    Baseline,
    /// Another raw limit reported for context; no ratio is judged against it.
    ExtraBaseline,
    /// The peer (ractor) the figure's `ratio_to_peer` is taken against.
    Peer,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Baseline => "baseline",
            Role::ExtraBaseline => "extra_baseline",
            Role::Peer => "peer",
        }
    }
}

/// A measurement that a figure is compared with, run in the same process and
/// interleaved with the figure's own repetitions.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// A short machine-readable name, such as `raw_crossbeam_bounded_1to1`.
    pub name: &'static str,
    /// What was measured, in words.
    pub what: &'static str,
    /// Its role for the figure.
    pub role: Role,
    /// Its repetitions, in the figure's unit.
    pub summary: Summary,
    /// The median CPU time (user + system, whole process) per operation, in
    /// nanoseconds, where the figure measures it.
    pub cpu_ns_per_op: Option<f64>,
}

/// One condition of a figure's target, judged on medians.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// `value / baseline >= ratio`.
    BaselineRatioAtLeast(f64),
    /// `value / baseline <= ratio`.
    BaselineRatioAtMost(f64),
    /// `value / peer >= ratio`.
    PeerRatioAtLeast(f64),
    /// `value / peer <= ratio`.
    PeerRatioAtMost(f64),
    /// `value < limit`.
    ValueBelow(f64),
    /// `value <= limit`.
    ValueAtMost(f64),
    /// A numeric fact of the figure is below a limit, e.g. `per_actor_us < 150`.
    FactBelow(&'static str, f64),
    /// A boolean fact of the figure is true, e.g. `never_blocked`.
    Holds(&'static str),
    /// `cpu_ns_per_op / baseline's cpu_ns_per_op <= ratio`.
    BaselineCpuRatioAtMost(f64),
}

impl Bound {
    fn text(&self, unit: &str) -> String {
        match self {
            Bound::BaselineRatioAtLeast(r) => format!(">= {r}x baseline"),
            Bound::BaselineRatioAtMost(r) => format!("<= {r}x baseline"),
            Bound::PeerRatioAtLeast(r) => format!(">= {r}x peer"),
            Bound::PeerRatioAtMost(r) => format!("<= {r}x peer"),
            Bound::ValueBelow(v) => format!("< {v} {unit}"),
            Bound::ValueAtMost(v) => format!("<= {v} {unit}"),
            Bound::FactBelow(name, v) => format!("{name} < {v}"),
            Bound::Holds(name) => name.replace('_', " "),
            Bound::BaselineCpuRatioAtMost(r) => format!("cpu <= {r}x baseline's"),
        }
    }
}

/// One line of the benchmark: Vigil's measurement, its references, and its
/// target.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The JSON key, such as `tell_throughput`.
    pub key: &'static str,
    /// What was measured, in words.
    pub what: &'static str,
    /// The unit of the value, the references and min/max.
    pub unit: &'static str,
    /// Vigil's repetitions.
    pub value: Summary,
    /// Vigil's median CPU time (user + system, whole process) per
    /// operation, in nanoseconds, where the figure measures it.
    pub cpu_ns_per_op: Option<f64>,
    /// The raw limits and the peer, each measured in the same run.
    pub references: Vec<Reference>,
    /// The target, every bound of which must hold.
    pub target: Vec<Bound>,
    /// Further facts measured in the run (sizes, maxima, derived per-unit figures).
    pub facts: Vec<(&'static str, Value)>,
}

impl Figure {
    fn reference(&self, role: Role) -> Option<&Reference> {
        self.references.iter().find(|r| r.role == role)
    }

    /// The median of the baseline, if one applies.
    pub fn baseline(&self) -> Option<f64> {
        self.reference(Role::Baseline).map(|r| r.summary.median)
    }

    /// The median of the peer, if it was measured.
    pub fn peer(&self) -> Option<f64> {
        self.reference(Role::Peer).map(|r| r.summary.median)
    }

    /// `value / baseline`, on medians.
    pub fn ratio_to_baseline(&self) -> Option<f64> {
        self.baseline().map(|b| self.value.median / b)
    }

    /// `value / peer`, on medians.
    pub fn ratio_to_peer(&self) -> Option<f64> {
        self.peer().map(|p| self.value.median / p)
    }

    /// Vigil's CPU time per operation over the baseline's, on medians.
    pub fn cpu_ratio_to_baseline(&self) -> Option<f64> {
        let baseline = self.reference(Role::Baseline)?.cpu_ns_per_op?;
        self.cpu_ns_per_op.map(|cpu| cpu / baseline)
    }

    fn fact(&self, name: &str) -> Option<&Value> {
        self.facts.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// Whether one bound holds. A bound on a ratio whose reference is missing
    /// does not hold.
    pub fn holds(&self, bound: &Bound) -> bool {
        let v = self.value.median;
        match bound {
            Bound::BaselineRatioAtLeast(r) => self.ratio_to_baseline().is_some_and(|x| x >= *r),
            Bound::BaselineRatioAtMost(r) => self.ratio_to_baseline().is_some_and(|x| x <= *r),
            Bound::PeerRatioAtLeast(r) => self.ratio_to_peer().is_some_and(|x| x >= *r),
            Bound::PeerRatioAtMost(r) => self.ratio_to_peer().is_some_and(|x| x <= *r),
            Bound::ValueBelow(limit) => v < *limit,
            Bound::ValueAtMost(limit) => v <= *limit,
            Bound::FactBelow(name, limit) => self.fact(name).and_then(Value::as_f64).is_some_and(|x| x < *limit),
            Bound::Holds(name) => self.fact(name).and_then(Value::as_bool) == Some(true),
            Bound::BaselineCpuRatioAtMost(r) => self.cpu_ratio_to_baseline().is_some_and(|x| x <= *r),
        }
    }

    /// Whether every bound of the target holds.
    pub fn meets_target(&self) -> bool {
        !self.target.is_empty() && self.target.iter().all(|b| self.holds(b))
    }

    /// The target in words, e.g. `>= 0.8x baseline; >= 8x peer`.
    pub fn target_text(&self) -> String {
        self.target.iter().map(|b| b.text(self.unit)).collect::<Vec<_>>().join("; ")
    }

    /// The figure as the JSON object described in the crate docs.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("what".into(), json!(self.what));
        obj.insert("value".into(), json!(self.value.median));
        obj.insert("unit".into(), json!(self.unit));
        obj.insert("min".into(), json!(self.value.min));
        obj.insert("max".into(), json!(self.value.max));
        obj.insert("samples".into(), json!(self.value.samples));
        obj.insert("baseline".into(), json!(self.baseline()));
        obj.insert("baseline_name".into(), json!(self.reference(Role::Baseline).map(|r| r.name)));
        obj.insert("ratio_to_baseline".into(), json!(self.ratio_to_baseline()));
        obj.insert("peer".into(), json!(self.peer()));
        obj.insert("peer_name".into(), json!(self.reference(Role::Peer).map(|r| r.name)));
        obj.insert("ratio_to_peer".into(), json!(self.ratio_to_peer()));
        obj.insert("cpu_ns_per_op".into(), json!(self.cpu_ns_per_op));
        obj.insert("cpu_ratio_to_baseline".into(), json!(self.cpu_ratio_to_baseline()));
        obj.insert("target".into(), json!(self.target_text()));
        obj.insert("meets_target".into(), json!(self.meets_target()));
        let bounds: Map<String, Value> =
            self.target.iter().map(|b| (b.text(self.unit), json!(self.holds(b)))).collect();
        obj.insert("bounds".into(), Value::Object(bounds));
        let refs: Map<String, Value> = self
            .references
            .iter()
            .map(|r| {
                let body = json!({
                    "role": r.role.as_str(),
                    "what": r.what,
                    "median": r.summary.median,
                    "min": r.summary.min,
                    "max": r.summary.max,
                    "unit": self.unit,
                    "samples": r.summary.samples,
                    "cpu_ns_per_op": r.cpu_ns_per_op,
                });
                (r.name.to_owned(), body)
            })
            .collect();
        obj.insert("references".into(), Value::Object(refs));
        for (k, v) in &self.facts {
            obj.insert((*k).to_owned(), v.clone());
        }
        Value::Object(obj)
    }
}

/// Facts about the run as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// `full`, `quick` or `smoke`.
    pub mode: &'static str,
    /// Repetitions per figure.
    pub reps: usize,
    /// UTC date and time the run started, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started: String,
    /// Wall-clock seconds the run took.
    pub seconds: f64,
    /// CPUs available to the process.
    pub cpus: usize,
    /// The 1-minute load average when the run started and ended, from `/proc/loadavg`.
    pub load: (Option<f64>, Option<f64>),
    /// Whether this is a release (optimised) build.
    pub release: bool,
}

/// Every figure of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Facts about the run.
    pub run: RunInfo,
    /// The figures, in the order they ran.
    pub figures: Vec<Figure>,
}

impl Report {
    /// The figure with this key.
    pub fn figure(&self, key: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.key == key)
    }

    /// One JSON object: each figure's key maps to its object, and `run` holds
    /// facts about the run.
    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        for figure in &self.figures {
            obj.insert(figure.key.to_owned(), figure.to_json());
        }
        let r = &self.run;
        obj.insert(
            "run".into(),
            json!({
                "mode": r.mode,
                "reps": r.reps,
                "started": r.started,
                "seconds": r.seconds,
                "cpus": r.cpus,
                "loadavg_start": r.load.0,
                "loadavg_end": r.load.1,
                "release": r.release,
            }),
        );
        Value::Object(obj)
    }

    /// A readable table: one line per figure, then the references.
    pub fn to_table(&self) -> String {
        let r = &self.run;
        let mut out = String::new();
        let load = |l: Option<f64>| l.map_or("?".to_owned(), |l| format!("{l:.2}"));
        let _ = writeln!(
            out,
            "vigil-bench {} run, started {}, {} reps per figure, {:.0} s, {} CPUs, load {} -> {}{}",
            r.mode,
            r.started,
            r.reps,
            r.seconds,
            r.cpus,
            load(r.load.0),
            load(r.load.1),
            if r.release { "" } else { " (DEBUG BUILD: figures are meaningless)" },
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<20} {:>28} {:>9} {:>14} {:>7} {:>14} {:>7}  {:<38} met",
            "figure", "vigil median [min..max]", "cpu/op", "baseline", "x base", "peer", "x peer", "target"
        );
        for f in &self.figures {
            let ratio = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.2}"));
            let value = format!(
                "{} [{}..{}]",
                human(f.value.median, f.unit),
                human_bare(f.value.min, f.unit),
                human_bare(f.value.max, f.unit)
            );
            let _ = writeln!(
                out,
                "{:<20} {:>28} {:>9} {:>14} {:>7} {:>14} {:>7}  {:<38} {}",
                f.key,
                value,
                cpu_text(f.cpu_ns_per_op),
                f.baseline().map_or("-".to_owned(), |b| human(b, f.unit)),
                ratio(f.ratio_to_baseline()),
                f.peer().map_or("-".to_owned(), |p| human(p, f.unit)),
                ratio(f.ratio_to_peer()),
                f.target_text(),
                if f.meets_target() { "yes" } else { "NO" }
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "references (median [min..max], cpu/op, same run, interleaved):");
        for f in &self.figures {
            for reference in &f.references {
                let _ = writeln!(
                    out,
                    "  {:<20} {:<14} {:<34} {} [{}..{}] {}  {}",
                    f.key,
                    reference.role.as_str(),
                    reference.name,
                    human(reference.summary.median, f.unit),
                    human_bare(reference.summary.min, f.unit),
                    human_bare(reference.summary.max, f.unit),
                    cpu_text(reference.cpu_ns_per_op),
                    reference.what
                );
            }
        }
        let facts: Vec<String> = self
            .figures
            .iter()
            .flat_map(|f| f.facts.iter().map(move |(k, v)| format!("  {:<20} {k} = {v}", f.key)))
            .collect();
        if !facts.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "facts:");
            for line in facts {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}

/// CPU time per operation for the table: `-` where it is not measured.
fn cpu_text(ns: Option<f64>) -> String {
    ns.map_or("-".to_owned(), |ns| format!("{} ns", human_bare(ns, "ns")))
}

/// A value with its unit, scaled for reading: rates in M or k.
fn human(v: f64, unit: &str) -> String {
    format!("{} {unit}", human_bare(v, unit))
}

fn human_bare(v: f64, unit: &str) -> String {
    if unit.ends_with("/s") {
        if v >= 1e6 {
            return format!("{:.2} M", v / 1e6);
        }
        if v >= 1e3 {
            return format!("{:.1} k", v / 1e3);
        }
    }
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(v: &[f64]) -> Summary {
        Summary::of(v.to_vec()).unwrap()
    }

    fn figure() -> Figure {
        Figure {
            key: "tell_throughput",
            what: "tells",
            unit: "msg/s",
            cpu_ns_per_op: None,
            value: summary(&[40.0, 42.0, 41.0]),
            references: vec![
                Reference {
                    name: "raw",
                    what: "raw",
                    role: Role::Baseline,
                    cpu_ns_per_op: None,
                    summary: summary(&[50.0, 49.0, 51.0]),
                },
                Reference {
                    name: "ractor",
                    what: "peer",
                    role: Role::Peer,
                    cpu_ns_per_op: None,
                    summary: summary(&[4.0, 5.0, 6.0]),
                },
            ],
            target: vec![Bound::BaselineRatioAtLeast(0.8), Bound::PeerRatioAtLeast(8.0)],
            facts: vec![("messages", json!(10))],
        }
    }

    #[test]
    fn ratios_are_taken_on_medians_and_every_bound_must_hold() {
        let f = figure();
        assert_eq!(f.ratio_to_baseline(), Some(41.0 / 50.0));
        assert_eq!(f.ratio_to_peer(), Some(41.0 / 5.0));
        assert!(f.meets_target());
        let mut g = f.clone();
        g.target.push(Bound::PeerRatioAtMost(0.1));
        assert!(!g.meets_target());
    }

    #[test]
    fn a_missing_reference_fails_its_bound() {
        let mut f = figure();
        f.references.retain(|r| r.role != Role::Peer);
        assert_eq!(f.ratio_to_peer(), None);
        assert!(!f.holds(&Bound::PeerRatioAtLeast(8.0)));
        assert!(!f.meets_target());
    }

    #[test]
    fn the_cpu_bound_compares_cpu_per_operation_with_the_baseline() {
        let mut f = figure();
        f.target = vec![Bound::BaselineCpuRatioAtMost(2.0)];
        // Not measured: the bound does not hold.
        assert_eq!(f.cpu_ratio_to_baseline(), None);
        assert!(!f.meets_target());
        f.cpu_ns_per_op = Some(300.0);
        f.references[0].cpu_ns_per_op = Some(200.0);
        assert_eq!(f.cpu_ratio_to_baseline(), Some(1.5));
        assert!(f.meets_target());
        f.cpu_ns_per_op = Some(500.0);
        assert!(!f.meets_target());
        let j = f.to_json();
        assert_eq!(j["cpu_ns_per_op"], json!(500.0));
        assert_eq!(j["references"]["raw"]["cpu_ns_per_op"], json!(200.0));
        assert!(f.target_text().contains("cpu <= 2x"));
    }

    #[test]
    fn facts_feed_their_bounds() {
        let mut f = figure();
        f.facts = vec![("never_blocked", json!(false)), ("per_actor_us", json!(100.0))];
        assert!(!f.holds(&Bound::Holds("never_blocked")));
        assert!(f.holds(&Bound::FactBelow("per_actor_us", 150.0)));
        assert!(!f.holds(&Bound::FactBelow("per_actor_us", 50.0)));
    }

    #[test]
    fn the_json_carries_every_median_needed_to_recompute_the_ratios() {
        let j = figure().to_json();
        assert_eq!(j["value"], json!(41.0));
        assert_eq!(j["baseline"], json!(50.0));
        assert_eq!(j["references"]["raw"]["median"], json!(50.0));
        assert_eq!(j["references"]["ractor"]["role"], json!("peer"));
        assert_eq!(j["ratio_to_peer"], json!(41.0 / 5.0));
        assert_eq!(j["meets_target"], json!(true));
        assert_eq!(j["messages"], json!(10));
        assert_eq!(j["target"], json!(">= 0.8x baseline; >= 8x peer"));
    }

    #[test]
    fn rates_read_in_millions() {
        assert_eq!(human(52_300_000.0, "msg/s"), "52.30 M msg/s");
        assert_eq!(human(670.4, "ns"), "670 ns");
        assert_eq!(human(13.26, "µs"), "13.3 µs");
    }
}
