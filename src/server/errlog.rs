//! Error log lines, rate-limited: a fault that fails every request (a full
//! disk, a latched engine, a connection flood at the cap) would otherwise
//! write one identical line per request and bury everything else in the log.
//!
//! The first occurrence of a line is logged at once; identical lines within
//! the next [`INTERVAL`] are only counted, and the first one after it is logged
//! with how many were held back. A burst that stops is therefore reported in
//! full only when the same line comes again; the first line of it always is.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long identical lines are counted instead of logged.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Distinct lines remembered at most; beyond it the oldest windows are
/// forgotten (so memory stays bounded whatever the messages hold).
const MAX_LINES: usize = 1024;

/// What to log for one occurrence of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `held_back` identical lines were suppressed since it was last logged.
    Log {
        /// Occurrences counted and not logged in the last window.
        held_back: u64,
    },
    /// Count it and log nothing.
    Suppress,
}

#[derive(Debug)]
struct Window {
    logged_at: Instant,
    held_back: u64,
}

/// Identical lines seen recently, keyed by their text.
#[derive(Debug, Default)]
pub struct RateLimited {
    lines: Mutex<HashMap<String, Window>>,
}

impl RateLimited {
    /// Decides about one occurrence of `line` at `now`.
    pub fn note(&self, line: &str, now: Instant) -> Verdict {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = lines.get_mut(line) {
            if now.saturating_duration_since(w.logged_at) < INTERVAL {
                w.held_back += 1;
                return Verdict::Suppress;
            }
            let held_back = std::mem::take(&mut w.held_back);
            w.logged_at = now;
            return Verdict::Log { held_back };
        }
        if lines.len() >= MAX_LINES {
            lines.retain(|_, w| now.saturating_duration_since(w.logged_at) < INTERVAL);
            if lines.len() >= MAX_LINES {
                lines.clear();
            }
        }
        lines.insert(
            line.to_string(),
            Window {
                logged_at: now,
                held_back: 0,
            },
        );
        Verdict::Log { held_back: 0 }
    }
}

fn global() -> &'static RateLimited {
    static LINES: OnceLock<RateLimited> = OnceLock::new();
    LINES.get_or_init(RateLimited::default)
}

/// Logs `line` at error level unless an identical one was logged within
/// [`INTERVAL`]; `status` is the HTTP status it answered (0: none).
pub fn error(status: u16, line: &str) {
    match global().note(line, Instant::now()) {
        Verdict::Suppress => {}
        Verdict::Log { held_back: 0 } => tracing::error!(status, "{line}"),
        Verdict::Log { held_back } => {
            tracing::error!(
                status,
                repeated = held_back,
                "{line} (and {held_back} more like it in the last {} s)",
                INTERVAL.as_secs()
            );
        }
    }
}

/// Like [`error`], at warning level (refusals that protect the server).
pub fn warn(line: &str) {
    match global().note(line, Instant::now()) {
        Verdict::Suppress => {}
        Verdict::Log { held_back: 0 } => tracing::warn!("{line}"),
        Verdict::Log { held_back } => tracing::warn!(
            repeated = held_back,
            "{line} (and {held_back} more like it in the last {} s)",
            INTERVAL.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_line_is_logged_once_per_interval_with_its_count() {
        let log = RateLimited::default();
        let t0 = Instant::now();
        assert_eq!(log.note("disk full", t0), Verdict::Log { held_back: 0 });
        for i in 1..=5 {
            let at = t0 + Duration::from_secs(i);
            assert_eq!(log.note("disk full", at), Verdict::Suppress);
        }
        let later = t0 + INTERVAL + Duration::from_millis(1);
        assert_eq!(log.note("disk full", later), Verdict::Log { held_back: 5 });
        assert_eq!(
            log.note("disk full", later + Duration::from_secs(1)),
            Verdict::Suppress
        );
    }

    #[test]
    fn different_lines_are_limited_apart() {
        let log = RateLimited::default();
        let t0 = Instant::now();
        assert_eq!(log.note("a", t0), Verdict::Log { held_back: 0 });
        assert_eq!(log.note("b", t0), Verdict::Log { held_back: 0 });
        assert_eq!(log.note("a", t0), Verdict::Suppress);
    }

    #[test]
    fn memory_stays_bounded_by_distinct_lines() {
        let log = RateLimited::default();
        let t0 = Instant::now();
        for i in 0..(MAX_LINES * 3) {
            log.note(&format!("line {i}"), t0);
        }
        let held = log.lines.lock().unwrap_or_else(|p| p.into_inner()).len();
        assert!(held <= MAX_LINES, "{held}");
    }
}
