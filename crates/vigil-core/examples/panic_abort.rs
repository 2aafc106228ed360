//! Starts a tree and prints what `start` says. Built with `panic = "abort"`,
//! it shows the error a user gets instead of a tree that cannot keep its
//! promises: `cargo run -p vigil-core --example panic_abort --config 'profile.dev.panic="abort"'`.

use vigil_core::{Actor, BoxError, ChildSpec, Context, Supervisor};

struct Idle;

impl Actor for Idle {
    type Msg = ();
    fn handle(&mut self, _: (), _: &mut Context<'_, ()>) -> Result<(), BoxError> {
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    match Supervisor::builder().child(ChildSpec::worker("idle", || Idle)).start() {
        Ok(system) => {
            println!("started; panics are caught");
            let _ = system.shutdown();
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            println!("refused: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
