//! `vigil-collector`: run the loopback HTTPS collector by hand.
//!
//! ```text
//! cargo run -p vigil-collector -- --listen 127.0.0.1:8443 --dir DIR
//! ```
//!
//! It prints the ingest endpoint and the CA PEM to trust, then reads control
//! commands from stdin, one per line (`help` lists them). The same commands
//! can be posted to `https://ADDR/control` (or `/control/<command>` with the
//! arguments as the body), and `GET /stats` reports the counters.

use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vigil_collector::{COMMAND_HELP, Collector, Command};

/// Runs the loopback HTTPS collector: prints the ingest endpoint and the CA
/// to trust, then reads control commands from stdin, one per line (`help`
/// lists them).
#[derive(Debug, PartialEq, Parser)]
#[command(name = "vigil-collector", after_help = "Logging: RUST_LOG [default: info].")]
struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen: String,
    /// Where the CA PEM files are written [default: a fresh temporary directory].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Append every received event to FILE as NDJSON [default: no log].
    #[arg(long, value_name = "FILE")]
    ndjson_log: Option<PathBuf>,
    /// Connections served at once [default: 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// Do not serve POST /control and GET /stats [default: served].
    #[arg(long = "no-http-control", action = clap::ArgAction::SetFalse)]
    http_control: bool,
}

fn main() -> ExitCode {
    // --help exits 0; a bad argument exits 2 with clap's message and usage.
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut builder = Collector::builder().listen(args.listen).control_endpoints(args.http_control);
    if let Some(dir) = args.dir {
        builder = builder.dir(dir);
    }
    if let Some(log) = args.ndjson_log {
        builder = builder.ndjson_log(log);
    }
    if let Some(n) = args.max_connections {
        builder = builder.max_connections(n as usize);
    }
    let collector = match builder.start() {
        Ok(collector) => collector,
        Err(e) => {
            eprintln!("vigil-collector: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut out = io::stdout().lock();
    let control = collector.endpoint().replace("/ingest", "/control");
    let _ = writeln!(out, "endpoint: {}", collector.endpoint());
    let _ = writeln!(out, "ca: {}", collector.ca_pem_path().display());
    if args.http_control {
        let _ = writeln!(out, "control: stdin, or POST {control}");
    } else {
        let _ = writeln!(out, "control: stdin");
    }
    let _ = writeln!(out, "{COMMAND_HELP}");
    let _ = out.flush();

    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        let reply = match line {
            "" => continue,
            "quit" | "exit" => break,
            "help" => format!("ok: {COMMAND_HELP}"),
            _ => match line.parse::<Command>() {
                Ok(command) => match collector.apply(&command) {
                    Ok(reply) => format!("ok: {reply}"),
                    Err(e) => format!("error: {e}"),
                },
                Err(e) => format!("error: {e}"),
            },
        };
        let _ = writeln!(out, "{reply}");
        let _ = out.flush();
        if line == "rotate" {
            let _ = writeln!(out, "ca: {}", collector.ca_pem_path().display());
            let _ = out.flush();
        }
    }
    let stats = collector.stats();
    collector.shutdown();
    let _ = writeln!(out, "stats: {}", serde_json::to_string(&stats).unwrap_or_default());
    let _ = writeln!(out, "bye");
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("vigil-collector").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.listen, "127.0.0.1:8443");
        assert!(args.http_control);
        assert_eq!(args.dir, None);
    }

    #[test]
    fn every_flag_in_both_spellings() {
        let args = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--dir=/tmp/x",
            "--ndjson-log",
            "/tmp/e.ndjson",
            "--max-connections=4",
            "--no-http-control",
        ])
        .unwrap();
        assert_eq!(
            args,
            Args {
                listen: "127.0.0.1:0".into(),
                dir: Some("/tmp/x".into()),
                ndjson_log: Some("/tmp/e.ndjson".into()),
                max_connections: Some(4),
                http_control: false,
            }
        );
        assert_eq!(parse(&["--help"]).unwrap_err().kind(), clap::error::ErrorKind::DisplayHelp);
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let message = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert!(
            message(&["--listen"]).contains("a value is required for '--listen <ADDR>'"),
            "{}",
            message(&["--listen"])
        );
        assert!(message(&["--max-connections", "many"]).contains("invalid value 'many'"));
        assert!(message(&["--max-connections", "0"]).contains("invalid value '0'"));
        assert!(message(&["--frobnicate"]).contains("unexpected argument '--frobnicate'"));
        assert!(message(&["--no-http-control=yes"]).contains("--no-http-control"));
    }
}
