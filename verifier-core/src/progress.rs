//! Progress reporting without printing: the library calls these hooks, the CLI draws bars.

/// Receives progress of long work. Implementations must be cheap: `advance` is called per chunk.
pub trait Progress: Send + Sync {
    /// A new phase starts; `total` is in bytes when known.
    fn begin(&self, _what: &str, _total: Option<u64>) {}
    /// `bytes` more of the current phase are done.
    fn advance(&self, _bytes: u64) {}
    /// The current phase is over.
    fn end(&self) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
