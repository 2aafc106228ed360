//! A service with a durable spool, for a crash test to kill: it emits events
//! steadily through a supervised pipeline that spools to disk and delivers
//! over HTTPS, and reports how far durability has reached.
//!
//! ```text
//! cargo run --example spool_crash -- --dir /tmp/spool --endpoint https://127.0.0.1:PORT/ingest --ca ca.pem --run 3
//! ```
//!
//! Every 5 ms it prints `durable <seq or -> emitted <n>`: the events `{"run":
//! R, "i": 0..n}` were emitted, and every event with a sequence number at or
//! below `seq` is on disk. Kill it (`kill -9`) at any moment and start it
//! again on the same directory: what was durable is delivered, exactly once
//! after de-duplication by the records' `id`. With `--drain` it emits
//! nothing, waits until everything recovered is delivered, prints `ledger
//! <json>` and stops cleanly.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;
use vigil::Supervisor;
use vigil::events::{Config, EventPipeline, SpoolConfig};
use vigil::https::HttpsSinkConfig;

#[derive(Serialize)]
struct Event {
    run: u64,
    i: u64,
}

struct Args {
    dir: String,
    endpoint: String,
    ca: String,
    run: u64,
    drain: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args { dir: String::new(), endpoint: String::new(), ca: String::new(), run: 0, drain: false };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => a.dir = value()?,
            "--endpoint" => a.endpoint = value()?,
            "--ca" => a.ca = value()?,
            "--run" => a.run = value()?.parse().map_err(|e| format!("--run: {e}"))?,
            "--drain" => a.drain = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.dir.is_empty() || a.endpoint.is_empty() || a.ca.is_empty() {
        return Err("usage: spool_crash --dir DIR --endpoint URL --ca PEM [--run N] [--drain]".into());
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::init();
    let args = args()?;
    let https = HttpsSinkConfig::new(&args.endpoint)
        .trust_file(&args.ca)
        .timeout_connect(Some(Duration::from_secs(2)))
        .timeout_global(Some(Duration::from_secs(5)));
    let config = Config::default()
        .capacity(100_000)
        .max_batch_events(256)
        .max_delay(Duration::from_millis(20))
        .retry_backoff_max(Duration::from_millis(200))
        .max_batch_age(Duration::from_secs(3600))
        .spool(SpoolConfig::new(&args.dir).segment_bytes(64 * 1024));
    let (emitter, events, handle) = EventPipeline::builder(config)
        .sink(move || https.build())
        .restart_backoff(vigil::Backoff::exponential(Duration::from_millis(20), Duration::from_millis(200)))
        .build()?;
    let system = Supervisor::builder().child(events).start()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "started recovered {} spool {}", handle.ledger().recovered, handle.spool_id().unwrap_or("-"))?;
    out.flush()?;

    if args.drain {
        let deadline = Instant::now() + Duration::from_secs(120);
        while handle.ledger().pending > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        handle.close();
        system.shutdown()?;
        writeln!(out, "ledger {}", serde_json::to_string(&handle.ledger())?)?;
        return Ok(());
    }

    let mut i = 0u64;
    let mut last_report = Instant::now();
    loop {
        // About 5,000 events a second from one thread: its order is the spool's.
        for _ in 0..10 {
            if emitter.emit(Event { run: args.run, i }).is_ok() {
                i += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
        if last_report.elapsed() >= Duration::from_millis(5) {
            last_report = Instant::now();
            // Read durable first: every event it covers was emitted before `i` was.
            let durable = handle.durable_seq().map_or("-".to_owned(), |d| d.to_string());
            writeln!(out, "durable {durable} emitted {i}")?;
            out.flush()?;
        }
    }
}
