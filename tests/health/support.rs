//! The trees the health tests watch.

use std::time::Duration;

use vigil::{Actor, BoxError, ChildSpec, Context, Restart, WorkerSpec};

/// What the test worker can be told to do.
pub(crate) enum Cmd {
    /// Block in `handle` until the sender is dropped: a wedge the hang
    /// watchdog sees, which the test can release.
    Block(crossbeam_channel::Receiver<()>),
    /// Fail with an error: one restart.
    Fail,
    /// End normally (`ctx.stop()`): a transient child is not restarted.
    Finish,
}

/// The test worker.
pub(crate) struct Worker;

impl Actor for Worker {
    type Msg = Cmd;
    fn handle(&mut self, cmd: Cmd, ctx: &mut Context<'_, Cmd>) -> Result<(), BoxError> {
        match cmd {
            Cmd::Block(gate) => {
                let _ = gate.recv();
                Ok(())
            }
            Cmd::Fail => Err("told to fail".into()),
            Cmd::Finish => {
                ctx.stop();
                Ok(())
            }
        }
    }
}

/// A significant (transient) worker `main` under the hang watchdog; its
/// supervisor needs an `auto_shutdown` (OTP refuses a significant child
/// under `never`).
pub(crate) fn significant_main(hang: Duration) -> WorkerSpec<Worker> {
    ChildSpec::worker("main", || Worker).restart(Restart::Transient).significant(true).hang_timeout(hang)
}

/// How often the monitor looks in these tests.
pub(crate) const INTERVAL: Duration = Duration::from_millis(50);

/// Gets `url` over plain HTTP: status and JSON body (or `Null`).
pub(crate) fn get(url: &str) -> (u16, serde_json::Value) {
    let (status, body) = get_text(url);
    (status, serde_json::from_str(&body).unwrap_or(serde_json::Value::Null))
}

pub(crate) use vigil_testkit::http_get as get_text;
