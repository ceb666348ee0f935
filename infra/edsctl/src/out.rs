//! Standard output for edsctl: never panics, and shows untrusted text safely.
//!
//! `println!` panics when stdout is closed (`edsctl ... | head -1`) or full (a full disk),
//! which ends the process with 101 and a Rust panic message. Every line goes through
//! [`text`] or [`json`] instead: the first write error is remembered, later output is
//! skipped, and [`finish`] turns it into the exit: a closed pipe is a normal end (the
//! reader chose to stop; exit 0, nothing printed), any other error is a one-sentence
//! [`CliError`].
//!
//! Values in tables and `key: value` lines come from pushes and from the ATS: a control
//! character in them (`ESC ]0;...BEL` retitles a terminal, other sequences move the cursor
//! or rewrite what is shown) is printed escaped (`\u{1b}`). JSON output is printed as the
//! exact JSON (serde_json escapes the C0 controls itself).

use std::io::{ErrorKind, Write};
use std::sync::Mutex;

use crate::error::CliError;

/// The first error writing stdout.
static FAILED: Mutex<Option<std::io::Error>> = Mutex::new(None);

fn write_raw(s: &str) {
    let Ok(mut failed) = FAILED.lock() else {
        return;
    };
    if failed.is_some() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        *failed = Some(e);
    }
}

/// Writes human-readable text (control characters escaped, newlines kept).
pub fn text(s: &str) {
    write_raw(&escape_keep_newlines(s));
}

/// Writes one line of JSON exactly as given.
pub fn json(s: &str) {
    write_raw(&format!("{s}\n"));
}

/// Flushes stdout and reports a write error as the command's outcome.
pub fn finish() -> Result<(), CliError> {
    let flushed = std::io::stdout().lock().flush();
    let failed = FAILED.lock().ok().and_then(|mut f| f.take());
    match failed.map_or(flushed, Err) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::Failed(format!(
            "writing the output failed ({e}): check the disk space or where the output goes"
        ))),
    }
}

/// Writes a line to stderr without panicking (stderr may be closed or full too).
pub fn error_line(s: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", escape(s));
}

/// Whether `c` must not reach a terminal raw: C0 and C1 controls, DEL, and the bidi
/// overrides and isolates that reorder what is displayed.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unsafe character written as `\u{..}`.
pub fn escape(s: &str) -> String {
    if !s.chars().any(unsafe_char) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn escape_keep_newlines(s: &str) -> String {
    s.split('\n').map(escape).collect::<Vec<_>>().join("\n")
}

/// `println!` for human output: the line is escaped and never panics.
macro_rules! outln {
    () => {
        $crate::out::text("\n")
    };
    ($($arg:tt)*) => {
        $crate::out::text(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_are_escaped_and_plain_text_is_kept() {
        assert_eq!(escape("Ada Lovelace é"), "Ada Lovelace é");
        assert_eq!(escape("x\u{1b}]0;owned\u{7}y"), "x\\u{1b}]0;owned\\u{7}y");
        assert_eq!(escape("\u{9b}2J\r\t\u{7f}"), "\\u{9b}2J\\u{d}\\u{9}\\u{7f}");
        assert_eq!(escape("a\u{202e}b"), "a\\u{202e}b");
        assert_eq!(escape_keep_newlines("a\u{1b}\nb\n"), "a\\u{1b}\nb\n");
    }
}
