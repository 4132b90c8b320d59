//! Writing results: a failed write is an error the user hears about, never a panic
//! (`println!` panics on a full disk) and never a silent exit 0 with results lost.
//!
//! Rust programs ignore SIGPIPE, so a closed pipe (`levit classify ... | head -1`) is
//! an `EPIPE` write error here. That case ends the command quietly, as `head` users
//! expect, but with a non-zero status, since the results after it were not delivered.

use std::borrow::Cow;
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

/// Writes `text` to stdout and flushes it, with [`printable`] control characters
/// (newlines kept).
pub fn print(text: &str) -> Result<(), OutputError> {
    let mut out = std::io::stdout().lock();
    out.write_all(printable(text, true).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// A line on stderr, [`printable`]. Messages are best effort: with stderr itself
/// closed or full there is nobody left to tell, and the exit status still says what
/// happened.
pub fn note(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", printable(line, false));
}

/// `text` safe to show on a terminal: control characters (C0 including ESC, DEL, C1)
/// and the Unicode bidirectional overrides are written as `\xNN` / `\u{NNNN}` escapes,
/// so a crafted file name or weight-file string cannot move the cursor, recolour or
/// rewrite the screen, or forge result lines. `keep_newlines` keeps `\n` for
/// multi-line output (every other character of a line is still escaped). JSON output
/// needs none of this: serde_json already escapes control characters in strings.
pub fn printable(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && !(keep_newlines && c == '\n'))
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !unsafe_char(c) => out.push(c),
            c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            printable("plain text, ünïcode", false),
            "plain text, ünïcode"
        );
        assert_eq!(printable("a\x1b[2Jb", false), "a\\x1b[2Jb");
        assert_eq!(printable("x\ry\n", false), "x\\x0dy\\x0a");
        assert_eq!(printable("x\ry\n", true), "x\\x0dy\n");
        assert_eq!(printable("\u{9b}31m\u{7f}", true), "\\x9b31m\\x7f");
        assert_eq!(
            printable("abc\u{202e}txt.jpg", false),
            "abc\\u{202e}txt.jpg"
        );
        assert_eq!(printable("tab\there", true), "tab\\x09here");
    }
}
