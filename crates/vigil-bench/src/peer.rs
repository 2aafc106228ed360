//! The peer: ractor on a tokio runtime.

use std::io;

use ractor::rpc::CallResult;
use tokio::runtime::{Builder, Runtime};

use crate::error::BenchError;

/// A multi-threaded tokio runtime with one worker per CPU, as a service
/// using ractor would run.
pub(crate) fn runtime() -> io::Result<Runtime> {
    Builder::new_multi_thread().enable_all().thread_name("ractor-peer").build()
}

/// The reply of a successful ractor call.
pub(crate) fn success<T>(figure: &'static str, result: CallResult<T>) -> Result<T, BenchError> {
    match result {
        CallResult::Success(v) => Ok(v),
        CallResult::Timeout => Err(BenchError::check(figure, "ractor call timed out")),
        CallResult::SenderError => Err(BenchError::check(figure, "ractor actor dropped the reply port")),
    }
}
