//! The benchmark still works: every measurement at a tiny size, through the
//! library and through the binary, with the JSON shape checked. The figures
//! of a smoke run (a debug build, tiny sizes) mean nothing, so no target is
//! asserted here; what is asserted is that every figure was measured, that
//! every ratio can be recomputed from the medians in the JSON, and that the
//! targets are judged from them.

use std::process::Command;

use serde_json::Value;
use vigil_bench::{Config, KEYS, run};

const FIELDS: [&str; 10] =
    ["value", "unit", "min", "max", "baseline", "ratio_to_baseline", "peer", "ratio_to_peer", "target", "meets_target"];

/// Figures whose peer (ractor) is measured.
const WITH_PEER: [&str; 5] = ["tell_throughput", "call_rtt", "restart_latency", "tree_scale", "idle_actor_rss"];

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn check_shape(json: &Value, reps: usize) {
    let obj = json.as_object().expect("one JSON object");
    for key in KEYS {
        let f = &obj[key];
        for field in FIELDS {
            assert!(f.get(field).is_some(), "{key} lacks {field}: {f}");
        }
        let (value, min, max) = (f["value"].as_f64().unwrap(), f["min"].as_f64().unwrap(), f["max"].as_f64().unwrap());
        assert!(value.is_finite() && min <= value && value <= max, "{key}: {min} <= {value} <= {max}");
        assert_eq!(f["samples"].as_array().unwrap().len(), reps, "{key} samples");
        assert!(!f["unit"].as_str().unwrap().is_empty());
        assert!(!f["target"].as_str().unwrap().is_empty(), "{key} has a target");

        // Every figure has a raw baseline, and its ratio is recomputable
        // from the medians in the JSON.
        let refs = f["references"].as_object().unwrap();
        let baseline_name = f["baseline_name"].as_str().unwrap_or_else(|| panic!("{key} has no baseline"));
        let baseline = refs[baseline_name]["median"].as_f64().unwrap();
        assert_eq!(refs[baseline_name]["role"], "baseline");
        assert_eq!(f["baseline"].as_f64(), Some(baseline));
        assert!(close(f["ratio_to_baseline"].as_f64().unwrap(), value / baseline), "{key} ratio to baseline");
        assert_eq!(refs[baseline_name]["samples"].as_array().unwrap().len(), reps);

        if WITH_PEER.contains(&key) {
            let peer_name = f["peer_name"].as_str().unwrap_or_else(|| panic!("{key} has no peer"));
            let peer = refs[peer_name]["median"].as_f64().unwrap();
            assert_eq!(refs[peer_name]["role"], "peer");
            assert!(close(f["ratio_to_peer"].as_f64().unwrap(), value / peer), "{key} ratio to peer");
        } else {
            assert!(f["peer"].is_null() && f["ratio_to_peer"].is_null(), "{key} has no peer");
        }

        // meets_target is exactly "every bound holds".
        let bounds = f["bounds"].as_object().unwrap();
        assert!(!bounds.is_empty());
        let all = bounds.values().all(|b| b.as_bool().unwrap());
        assert_eq!(f["meets_target"].as_bool(), Some(all), "{key} meets_target");
    }
    // The extra raw limit of restart_latency.
    let restart = &obj["restart_latency"]["references"];
    assert_eq!(restart["raw_spawn_restart"]["role"], "extra_baseline");
    assert_eq!(restart["raw_in_place_restart"]["role"], "baseline");
    assert!(obj["tree_scale"]["per_actor_us"].as_f64().unwrap() > 0.0);
    assert_eq!(obj["emit_blocked_p999"]["never_blocked"], true, "emit blocked while the sink hung");
    assert_eq!(obj["run"]["reps"], reps);
}

#[test]
fn every_measurement_runs_and_the_json_has_its_shape() {
    let config = Config::smoke().probe_exe(env!("CARGO_BIN_EXE_vigil-bench"));
    let mut seen = Vec::new();
    let report = run(&config, &mut |key| seen.push(key.to_owned())).unwrap();
    assert_eq!(seen, KEYS);
    check_shape(&report.to_json(), config.reps);
    assert_eq!(report.to_json()["idle_actor_rss"]["fresh_process_per_rep"], true);
    let table = report.to_table();
    for key in KEYS {
        assert!(table.contains(key), "the table lists {key}");
    }
}

#[test]
fn the_binary_prints_one_json_object() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-bench")).args(["--smoke", "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    check_shape(&json, Config::smoke().reps);
    assert_eq!(json["run"]["mode"], "smoke");
}

#[test]
fn the_binary_refuses_unknown_arguments() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-bench")).arg("--fast").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument"));
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-bench")).args(["--probe-rss", "erlang", "10"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_vigil-bench")).args(["--probe-rss", "raw", "10"]).output().unwrap();
    assert!(out.status.success());
    let kib: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(kib.is_finite());
}
