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

use vigil_collector::{COMMAND_HELP, Collector, Command};

const USAGE: &str = "usage: vigil-collector [--listen ADDR] [--dir DIR] [--ndjson-log FILE] \
[--max-connections N] [--no-http-control]

  --listen ADDR        address to listen on (default 127.0.0.1:8443)
  --dir DIR            where the CA PEM files are written (default: a fresh temporary directory)
  --ndjson-log FILE    append every received event to FILE as NDJSON
  --max-connections N  connections served at once (default 64)
  --no-http-control    do not serve POST /control and GET /stats

Logging: RUST_LOG (default info).";

/// The command line, parsed.
#[derive(Debug, PartialEq)]
struct Args {
    listen: String,
    dir: Option<PathBuf>,
    ndjson_log: Option<PathBuf>,
    max_connections: Option<usize>,
    http_control: bool,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut parsed = Args {
        listen: "127.0.0.1:8443".into(),
        dir: None,
        ndjson_log: None,
        max_connections: None,
        http_control: true,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag.to_owned(), Some(value.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value =
            |name: &str| inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--listen" => parsed.listen = value("--listen")?,
            "--dir" => parsed.dir = Some(value("--dir")?.into()),
            "--ndjson-log" => parsed.ndjson_log = Some(value("--ndjson-log")?.into()),
            "--max-connections" => {
                let n = value("--max-connections")?;
                parsed.max_connections =
                    Some(n.parse().map_err(|_| format!("--max-connections needs a positive integer, not {n:?}"))?);
            }
            "--no-http-control" if inline.is_none() => parsed.http_control = false,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Parsed::Run(parsed))
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(args)) => args,
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("vigil-collector: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut builder = Collector::builder().listen(args.listen).control_endpoints(args.http_control);
    if let Some(dir) = args.dir {
        builder = builder.dir(dir);
    }
    if let Some(log) = args.ndjson_log {
        builder = builder.ndjson_log(log);
    }
    if let Some(n) = args.max_connections {
        builder = builder.max_connections(n);
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

    fn parse(args: &[&str]) -> Result<Parsed, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults() {
        let Parsed::Run(args) = parse(&[]).unwrap() else { panic!() };
        assert_eq!(args.listen, "127.0.0.1:8443");
        assert!(args.http_control);
        assert_eq!(args.dir, None);
    }

    #[test]
    fn every_flag_in_both_spellings() {
        let Parsed::Run(args) = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--dir=/tmp/x",
            "--ndjson-log",
            "/tmp/e.ndjson",
            "--max-connections=4",
            "--no-http-control",
        ])
        .unwrap() else {
            panic!()
        };
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
        assert_eq!(parse(&["--help"]).unwrap(), Parsed::Help);
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        assert!(parse(&["--listen"]).unwrap_err().contains("--listen needs a value"));
        assert!(parse(&["--max-connections", "many"]).unwrap_err().contains("positive integer"));
        assert!(parse(&["--frobnicate"]).unwrap_err().contains("unknown argument"));
        assert!(parse(&["--no-http-control=yes"]).unwrap_err().contains("unknown argument"));
    }
}
