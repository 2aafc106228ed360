//! vigil-events: a never-blocking event buffer and a supervised batcher.

mod buffer;
mod clock;
mod config;
mod encode;
mod engine;
mod flush;
mod ledger;
mod local;
mod sink;

pub use buffer::{Dropped, Emitter};
pub use config::{Config, ConfigError, OverflowPolicy};
pub use flush::{FlushError, FlushReport};
pub use ledger::{DropCounts, DropReason, LastError, LedgerSnapshot};
pub use sink::{Batch, Delivery, Encoding, Sink, SinkError};
