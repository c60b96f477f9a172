//! Logging for the three binaries (`coordinator`, `fetcher`, `runner`), set up once in
//! each `main`: `tracing` events on stderr, as human-readable lines (the default) or JSON
//! lines, the level from `RUST_LOG`.
//!
//! Values in log lines come from task authors and guests (task ids, entry names, error
//! texts), so the human format escapes every control character in them: a task id holding
//! `\n2026-11-30T00:00:00Z ERROR forged` stays on its own line, as `\n…`, and cannot fake a
//! log line, nor can an escape sequence repaint a terminal. The JSON format escapes by its
//! nature.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{debug_fn, Writer};
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One readable line per event, control characters escaped.
    Human,
    /// One JSON object per event.
    Json,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" => Ok(Format::Human),
            "json" => Ok(Format::Json),
            other => Err(format!("{other:?} is not a log format: use human or json")),
        }
    }
}

/// Installs the global subscriber: stderr, `format`, the level from `RUST_LOG` or else
/// `default_level` (e.g. `info`). A second call does nothing.
pub fn init(format: Format, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let _ = match format {
        Format::Human => builder
            .fmt_fields(
                debug_fn(|w: &mut Writer<'_>, field, value| {
                    if field.name() == "message" {
                        write_escaped(w, value)
                    } else {
                        write!(w, "{field}=")?;
                        write_escaped(w, value)
                    }
                })
                .delimited(" "),
            )
            .try_init(),
        Format::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Writes `value`'s text with every character that could break or fake a log line escaped.
fn write_escaped(w: &mut Writer<'_>, value: &dyn fmt::Debug) -> fmt::Result {
    let mut escaper = Escaper(w);
    write!(escaper, "{value:?}")
}

/// A `fmt::Write` that escapes as it goes, so nothing is formatted twice.
struct Escaper<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaper<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(needs_escape) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or_default();
            write_escape(self.0, c)?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// Control characters (C0, DEL, C1), the Unicode line and paragraph separators, and the
/// bidirectional overrides that can make text display in another order than it is read.
pub fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn write_escape(w: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => w.write_str("\\n"),
        '\r' => w.write_str("\\r"),
        '\t' => w.write_str("\\t"),
        c => write!(w, "\\u{{{:x}}}", u32::from(c)),
    }
}

/// `s` with every character [`needs_escape`] names escaped, as the human log writes it.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if needs_escape(c) {
            let _ = write_escape(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_forged_line_stays_on_its_line() {
        let forged = "t1\n2026-11-30T00:00:00Z ERROR forged\r\u{1b}[2J\u{2028}\u{202e}";
        assert_eq!(
            escape(forged),
            "t1\\n2026-11-30T00:00:00Z ERROR forged\\r\\u{1b}[2J\\u{2028}\\u{202e}"
        );
    }

    proptest! {
        #[test]
        fn escaped_text_has_no_line_break_or_control_character(s in any::<String>()) {
            let e = escape(&s);
            prop_assert!(!e.chars().any(needs_escape), "{e:?}");
            if !s.chars().any(needs_escape) {
                prop_assert_eq!(e, s);
            }
        }
    }
}
