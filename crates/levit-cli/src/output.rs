//! Writing results: a failed write is an error the user hears about, never a panic
//! (`println!` panics on a full disk) and never a silent exit 0 with results lost.
//!
//! Rust programs ignore SIGPIPE, so a closed pipe (`levit classify ... | head -1`) is
//! an `EPIPE` write error here. That case ends the command quietly, as `head` users
//! expect, but with a non-zero status, since the results after it were not delivered.

use std::io::Write;

/// Why writing results to stdout failed.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader went away (closed pipe): stop without a message, exit non-zero.
    #[error("stdout was closed before every result was written")]
    Closed,
    /// Anything else (a full disk, an I/O error): reported.
    #[error("cannot write results to stdout: {0}")]
    Failed(String),
}

impl From<std::io::Error> for OutputError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            OutputError::Closed
        } else {
            OutputError::Failed(crate::classify::io_reason(&e))
        }
    }
}

/// Writes `text` to stdout and flushes it.
pub fn print(text: &str) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// A line on stderr. Messages are best effort: with stderr itself closed or full there
/// is nobody left to tell, and the exit status still says what happened.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
