//! The `vigil-collector` binary: startup output, the stdin control protocol
//! and the HTTP control endpoint, driven like a person would.

use crate::support as common;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};

use common::{DEADLINE, agent};

struct Running {
    child: Option<Child>,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil-collector"))
            .args(args)
            .env("RUST_LOG", "vigil::collector=debug")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the binary");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        Running { child: Some(child), stdin, lines }
    }

    /// The next line that starts with `prefix`, without the prefix.
    fn expect(&self, prefix: &str) -> String {
        loop {
            let line = self.lines.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("no line starting {prefix:?}"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_owned();
            }
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn the_binary_is_controlled_from_stdin_and_http() {
    let tmp = vigil_testkit::TempDir::new("collector-bin");
    // Not made yet: the binary makes it.
    let dir = tmp.path("collector");
    let mut bin = Running::start(&["--listen", "127.0.0.1:0", "--dir", dir.to_str().unwrap()]);
    let endpoint = bin.expect("endpoint: ");
    let ca = PathBuf::from(bin.expect("ca: "));
    assert!(endpoint.starts_with("https://127.0.0.1:") && endpoint.ends_with("/ingest"), "{endpoint}");
    assert_eq!(ca, dir.join("ca-0.pem"));

    let client = agent(&[&ca]);
    let post = |client: &ureq::Agent, key: &str, seq: u64| {
        client
            .post(&endpoint)
            .header("Content-Type", "application/x-ndjson")
            .header("Idempotency-Key", key)
            .send(common::ndjson([seq]))
    };
    assert_eq!(post(&client, "a", 1).unwrap().status(), 200);

    // A fault from stdin.
    bin.send("fault 503 retry-after=7");
    assert_eq!(bin.expect("ok: "), "fault for every request: status 503 retry-after=7");
    let refused = post(&client, "b", 2).unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "7");

    // Healed over HTTP.
    let control = endpoint.replace("/ingest", "/control");
    let mut healed = client.post(&format!("{control}/healthy")).send("").unwrap();
    assert_eq!(healed.status(), 200);
    assert_eq!(healed.body_mut().read_to_string().unwrap().trim(), "fault for every request: healthy");
    assert_eq!(post(&client, "b", 2).unwrap().status(), 200);
    let bad = client.post(&control).send("explode").unwrap();
    assert_eq!(bad.status(), 400);

    // Stats on stdin and over HTTP agree.
    bin.send("stats");
    let stats: serde_json::Value = serde_json::from_str(&bin.expect("ok: ")).unwrap();
    assert_eq!(stats["unique_events"], 2);
    assert_eq!(stats["faults_served"], 1);
    assert_eq!(stats["fault"], "healthy");
    let mut over_http = client.get(&endpoint.replace("/ingest", "/stats")).call().unwrap();
    let over_http: serde_json::Value = serde_json::from_str(&over_http.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(over_http["unique_events"], 2);

    // Rotation prints the new CA; the old-CA client is then refused.
    bin.send("rotate");
    assert!(bin.expect("ok: ").starts_with("rotated"));
    let new_ca = PathBuf::from(bin.expect("ca: "));
    assert_eq!(new_ca, dir.join("ca-1.pem"));
    let err = post(&agent(&[&ca]), "c", 3).unwrap_err();
    assert!(common::rustls_error(&err).is_some(), "{err:?}");
    assert_eq!(post(&agent(&[&new_ca]), "c", 3).unwrap().status(), 200);

    // Certificate modes over HTTP too.
    let fresh = agent(&[&new_ca]);
    assert_eq!(fresh.post(&control).send("expired").unwrap().status(), 200);
    assert!(post(&agent(&[&new_ca]), "d", 4).is_err());

    // Typos are reported, not fatal.
    bin.send("explode");
    assert!(bin.expect("error: ").contains("unknown command"));

    bin.send("quit");
    let final_stats: serde_json::Value = serde_json::from_str(&bin.expect("stats: ")).unwrap();
    assert_eq!(final_stats["unique_events"], 3);
    assert_eq!(bin.expect("bye"), "");
    let (tx, rx) = mpsc::channel();
    let mut child = bin.child.take().unwrap();
    std::thread::spawn(move || tx.send(child.wait().unwrap()).unwrap());
    assert!(rx.recv_timeout(DEADLINE).expect("the binary exits").success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_exit_with_usage() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_vigil-collector")).args(["--listen"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("a value is required for '--listen <ADDR>'") && stderr.contains("--help"), "{stderr}");
}

#[test]
fn help_lists_every_flag_with_its_default_and_exits_0() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_vigil-collector")).arg("--help").stdin(Stdio::null()).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in ["--listen", "--dir", "--ndjson-log", "--max-connections", "--no-http-control", "--help"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
    assert!(help.contains("[default: 127.0.0.1:8443]") && help.contains("[default: 64]"), "{help}");
}

#[test]
fn an_unusable_address_is_reported() {
    let output = Command::new(env!("CARGO_BIN_EXE_vigil-collector"))
        .args(["--listen", "256.0.0.1:1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("cannot listen on 256.0.0.1:1"), "{stderr}");
}
