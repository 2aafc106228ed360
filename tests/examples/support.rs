//! Running the workspace's examples from tests.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The path of a built example, building it first if `cargo test` did not.
pub fn example(name: &str) -> PathBuf {
    // tests run from target/<profile>/deps/; examples live in target/<profile>/examples/.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building example {name} failed");
    }
    path
}

/// Runs an example to completion with `args` and returns what it printed.
///
/// Incident replays (`--duration`) run one at a time: their pass criteria
/// compare latencies between phases, and two replays side by side on a
/// 2-core host disturb each other's.
pub fn run_example(name: &str, args: &[&str]) -> Output {
    static REPLAYS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time =
        (name == "incident" && args.contains(&"--duration")).then(|| REPLAYS.lock().unwrap_or_else(|e| e.into_inner()));
    Command::new(example(name))
        .args(args)
        .env("RUST_LOG", "vigil=info")
        .output()
        .unwrap_or_else(|e| panic!("running example {name}: {e}"))
}
