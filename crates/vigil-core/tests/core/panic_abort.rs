//! A build with `panic = "abort"` cannot catch panics: starting a tree there
//! returns a clear error instead. Builds the `panic_abort` example with that
//! profile in a target directory of its own.

use std::process::Command;

#[test]
fn a_panic_abort_build_refuses_to_start_a_tree() {
    let target = std::env::temp_dir().join("vigil-panic-abort-target");
    let output = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "-p", "vigil-core", "--example", "panic_abort"])
        .args(["--config", "profile.dev.panic=\"abort\""])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stdout.contains(
            "refused: invalid configuration: this binary is built with panic = \"abort\": vigil cannot catch panics; build with panic = \"unwind\""
        ),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
}
