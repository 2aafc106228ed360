//! `vigil-bench [--json] [--quick]`: Vigil against the raw limits and ractor.

use std::process::ExitCode;

use vigil_bench::{Config, KEYS, ProbeKind, probe_rss, run_figures};

const USAGE: &str = "usage: vigil-bench [--json] [--quick] [--only KEY,KEY...]\n\
    \n  --json          print one JSON object instead of a table\
    \n  --quick         a shorter run of the same shape (under 30 s)\
    \n  --smoke         every measurement at a tiny size (figures mean nothing)\
    \n  --only KEYS     measure only these figures (comma-separated), e.g. to profile one\
    \n  --json-file F   also write the JSON object to file F";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--probe-rss") {
        return probe(&args[1..]);
    }
    let (mut json, mut config) = (false, Config::full());
    let mut json_file: Option<String> = None;
    let mut keys: Vec<String> = KEYS.iter().map(|k| (*k).to_owned()).collect();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json-file" => match args.next() {
                Some(path) => json_file = Some(path.clone()),
                None => {
                    eprintln!("--json-file needs a path\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--only" => match args.next() {
                Some(list) => keys = list.split(',').map(str::to_owned).collect(),
                None => {
                    eprintln!("--only needs a list of figures: {}\n{USAGE}", KEYS.join(","));
                    return ExitCode::from(2);
                }
            },
            "--json" => json = true,
            "--quick" => config = Config::quick(),
            "--smoke" => config = Config::smoke(),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        config = config.probe_exe(exe);
    }
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; run with --release for meaningful figures");
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let report = match run_figures(&config, &keys, &mut |key| eprintln!("measuring {key} ...")) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("vigil-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let text = serde_json::to_string_pretty(&report.to_json()).unwrap_or_default();
    if let Some(path) = json_file
        && let Err(error) = std::fs::write(&path, format!("{text}\n"))
    {
        eprintln!("vigil-bench: cannot write {path}: {error}");
        return ExitCode::FAILURE;
    }
    if json {
        println!("{text}");
    } else {
        print!("{}", report.to_table());
    }
    ExitCode::SUCCESS
}

/// `--probe-rss KIND N`: prints the RSS growth per idle actor in KiB.
fn probe(args: &[String]) -> ExitCode {
    let kind = args.first().and_then(|k| ProbeKind::parse(k));
    let n = args.get(1).and_then(|n| n.parse().ok());
    let (Some(kind), Some(n)) = (kind, n) else {
        eprintln!("usage: vigil-bench --probe-rss vigil|raw|ractor N");
        return ExitCode::from(2);
    };
    match probe_rss(kind, n) {
        Ok(kib) => {
            println!("{kib}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("vigil-bench: {error}");
            ExitCode::FAILURE
        }
    }
}
