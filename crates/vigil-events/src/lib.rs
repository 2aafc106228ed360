//! vigil-events: a never-blocking event buffer and a supervised batcher.
//!
//! (Work in progress: the buffer and batcher land with the events issue.)

mod sink;

pub use sink::{Batch, Delivery, Encoding, Sink, SinkError};
