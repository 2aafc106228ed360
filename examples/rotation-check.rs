//! The operator's check for an announced certificate rotation: run it on each
//! host the day the rotation is announced.
//!
//! It loads the host's trust files, connects to the endpoint once (a `HEAD`
//! request: nothing is delivered), checks the announced CA against the trust
//! set, and prints the readiness report: the served chain with each
//! certificate's days left, the anchor that verified it, the trust set, the
//! announced rotation and whether this host is ready for it.
//!
//! ```text
//! cargo run --example rotation-check -- --endpoint https://ingest.example/v1 \
//!     --ca /etc/ssl/ingest-ca.pem --announced-ca ingest-ca-2.pem --by 2017-10-05
//! ```
//!
//! Exit status: 0 when ready, 1 when not ready, 2 when the check itself
//! cannot run (bad arguments, unreadable files, an announced CA that is not a
//! valid CA).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use vigil::https::{HttpsSinkConfig, NewCa};

/// Checks whether this host is ready for an endpoint's certificates, now and
/// after an announced CA rotation. Exits 0 when ready, 1 when not, 2 when the
/// check cannot run.
#[derive(Debug, Parser)]
#[command(name = "rotation-check")]
struct Args {
    /// The HTTPS endpoint events are delivered to.
    #[arg(long, value_name = "URL")]
    endpoint: String,
    /// A trust file (PEM CA certificates) this host uses; repeat for several.
    #[arg(long = "ca", value_name = "FILE", required = true)]
    trust_files: Vec<PathBuf>,
    /// The new CA the endpoint's operator announced, as a PEM file.
    #[arg(long, value_name = "FILE", requires = "by", conflicts_with = "announced_spki")]
    announced_ca: Option<PathBuf>,
    /// The new CA as a SHA-256 fingerprint of its public key (hex).
    #[arg(long, value_name = "HEX", requires = "by")]
    announced_spki: Option<String>,
    /// The announced date of the rotation, YYYY-MM-DD.
    #[arg(long, value_name = "DATE")]
    by: Option<String>,
    /// A client certificate chain (PEM), when the endpoint wants mTLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for the endpoint.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    timeout: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = HttpsSinkConfig::new(&args.endpoint)
        .timeout_global(Some(Duration::from_secs(args.timeout)))
        // One connection, nothing to warn about twice: the report says it all.
        .expiry_warning(Duration::ZERO);
    for file in &args.trust_files {
        config = config.trust_file(file);
    }
    if let (Some(chain), Some(key)) = (&args.client_cert, &args.client_key) {
        config = config.client_identity(chain, key);
    }
    let new_ca = match (&args.announced_ca, &args.announced_spki) {
        (Some(pem), _) => Some(NewCa::Pem(pem.clone())),
        (None, Some(spki)) => Some(NewCa::SpkiSha256(spki.clone())),
        (None, None) => None,
    };
    if let (Some(new_ca), Some(by)) = (new_ca, &args.by) {
        config = config.announced_rotation(new_ca, by.clone());
    }
    let mut sink = match config.build() {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("rotation-check: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = sink.probe() {
        // Not fatal to the check: the report says what failed.
        eprintln!("rotation-check: connecting to {} failed: {e}", config.endpoint());
    }
    let report = config.stats().readiness();
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("rotation-check: cannot print the report: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print!("{report}");
    }
    if report.ready { ExitCode::SUCCESS } else { ExitCode::from(1) }
}
