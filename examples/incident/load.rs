//! The load generator: client threads sending requests at a fixed rate and
//! recording every response status and latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One answered (or failed) request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// When it was sent, since the start of the run.
    pub(crate) at: Duration,
    pub(crate) latency: Duration,
    pub(crate) ok: bool,
}

/// Everything one target's clients recorded.
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) ok: AtomicU64,
    pub(crate) failed: AtomicU64,
    samples: Mutex<Vec<Sample>>,
    first_error: Mutex<Option<String>>,
}

impl Recorder {
    fn record(&self, sample: Sample, error: Option<String>) {
        if sample.ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if let Some(error) = error {
                self.first_error.lock().get_or_insert(error);
            }
        }
        self.samples.lock().push(sample);
    }

    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples.lock().clone()
    }

    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error.lock().clone()
    }

    pub(crate) fn total(&self) -> u64 {
        self.ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }
}

/// A running load generator for one target.
pub(crate) struct Load {
    pub(crate) recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `clients` threads sending `rps` requests per second in total to
    /// `url`, from now on; samples are timed from `epoch`.
    pub(crate) fn start(url: String, rps: u32, clients: usize, epoch: Instant) -> Load {
        let recorder = Arc::new(Recorder::default());
        let stop = Arc::new(AtomicBool::new(false));
        let interval = Duration::from_secs_f64(clients as f64 / f64::from(rps.max(1)));
        // Open the keep-alive connections one at a time: tiny_http's
        // connection pool can park a connection that arrives in a burst
        // behind busy ones until another connection closes.
        let count = clients;
        let agents: Vec<ureq::Agent> = (0..clients)
            .map(|_| {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(5)))
                    .build()
                    .new_agent();
                let health = url.replace("/charge", "/health");
                let _ = agent.get(&health).call().and_then(|mut r| r.body_mut().read_to_string());
                agent
            })
            .collect();
        let start = Instant::now();
        let clients = agents
            .into_iter()
            .enumerate()
            .map(|(n, agent)| {
                let (recorder, stop, url) = (Arc::clone(&recorder), Arc::clone(&stop), url.clone());
                // Spread the clients' first requests over one interval.
                let offset = interval.mul_f64(n as f64 / count as f64);
                std::thread::Builder::new()
                    .name(format!("client-{n}"))
                    .spawn(move || client(&agent, &url, interval, start + offset, epoch, &stop, &recorder))
                    .expect("spawn a client thread")
            })
            .collect();
        Load { recorder, stop, clients }
    }

    /// Stops sending and waits for the requests in flight.
    pub(crate) fn stop(self) -> Arc<Recorder> {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            let _ = client.join();
        }
        self.recorder
    }
}

fn client(
    agent: &ureq::Agent,
    url: &str,
    interval: Duration,
    first: Instant,
    epoch: Instant,
    stop: &AtomicBool,
    recorder: &Recorder,
) {
    let mut next = first;
    while !stop.load(Ordering::Relaxed) {
        // Pacing to a fixed rate, not waiting for a condition.
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let sent = Instant::now();
        let outcome = agent
            .post(url)
            .header("Content-Type", "application/json")
            .send(r#"{"amount_cents":1250,"currency":"EUR"}"#)
            .map_err(|e| e.to_string())
            .and_then(|mut response| {
                let status = response.status().as_u16();
                // Read the whole answer: a cut-off response is a failure too.
                let body = response.body_mut().read_to_string().map_err(|e| e.to_string())?;
                if status == 201 && !body.is_empty() { Ok(()) } else { Err(format!("HTTP {status}")) }
            });
        let sample = Sample { at: sent - epoch, latency: sent.elapsed(), ok: outcome.is_ok() };
        recorder.record(sample, outcome.err());
        next += interval;
    }
}

/// The value below which `q` of the latencies fall, in milliseconds.
pub(crate) fn percentile_ms(latencies: &mut [Duration], q: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.sort_unstable();
    let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
    latencies[rank - 1].as_secs_f64() * 1e3
}
