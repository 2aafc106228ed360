//! vigil-health against the real engines: a `NOTIFY_SOCKET` datagram
//! listener (systemd's side of `Type=notify`), an HTTP client on the probes,
//! a real Prometheus and promtool, and `systemd-analyze verify` on the
//! shipped unit. Tests that need an engine a fresh machine lacks are
//! `#[ignore]`d with the reason; `.ci/run` installs the engines and runs them
//! by name.

mod deploy;
mod notify;
mod probes;
mod prometheus;
mod support;
