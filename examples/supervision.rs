//! A small service tree: a flaky worker under a one-for-one supervisor,
//! restarted with backoff, while the main thread keeps serving.
//!
//! Run with `RUST_LOG=vigil=info cargo run --example supervision`.

use std::time::Duration;

use vigil::{Actor, Backoff, BoxError, ChildSpec, Context, Reply, Strategy, Supervisor};

enum Msg {
    Work(u64),
    Total(Reply<u64>),
}

/// Sums work items, and panics on every seventh one.
struct Flaky {
    total: u64,
}

impl Actor for Flaky {
    type Msg = Msg;

    fn handle(&mut self, msg: Msg, _: &mut Context<'_, Msg>) -> Result<(), BoxError> {
        match msg {
            Msg::Work(n) if n % 7 == 0 => panic!("work item {n} is cursed"),
            Msg::Work(n) => self.total += n,
            Msg::Total(reply) => {
                let _ = reply.send(self.total);
            }
        }
        Ok(())
    }
}

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("vigil=info")).init();
    let flaky = ChildSpec::worker("flaky", || Flaky { total: 0 })
        .backoff(Backoff::exponential(Duration::from_millis(5), Duration::from_millis(200)));
    let addr = flaky.addr();
    let system = match Supervisor::builder()
        .strategy(Strategy::OneForOne)
        .intensity(5, Duration::from_secs(1))
        .child(flaky)
        .start()
    {
        Ok(system) => system,
        Err(e) => {
            eprintln!("could not start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };

    // The main thread goes on working while the worker panics and restarts.
    let mut served = 0u64;
    for n in 1..=30 {
        let _ = addr.tell(Msg::Work(n));
        served += 1;
    }
    let total = addr.call(Msg::Total, Duration::from_secs(5));
    println!("main thread served {served} requests; the latest incarnation summed {total:?}");
    println!("{}", serde_json::to_string_pretty(&system.stats()).unwrap_or_default());
    let outcome = system.shutdown();
    println!("shutdown: {outcome:?}");
    vigil::exit_code(&outcome)
}
