//! Progress of long offline work (`import`, `export`, `verify`, `compact`)
//! on stderr.
//!
//! Invariant: nothing is drawn unless stderr is a terminal, so scripts and
//! logs see only the subcommand's own one-line summary. The bar is cleared
//! when the work ends, so the summary line is the last thing on the screen.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar (or spinner, when the amount of work is unknown).
#[derive(Debug)]
pub struct Progress(ProgressBar);

impl Progress {
    /// A bar counting `total` units of `what` ("keys", "lines").
    pub fn bar(total: u64, what: &'static str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), target());
        let template = format!("{{msg}} [{{bar:30}}] {{pos}}/{{len}} {what} ({{eta}} left)");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress(bar)
    }

    /// Draws nothing (output shares the terminal with the bar).
    pub fn hidden() -> Progress {
        Progress(ProgressBar::hidden())
    }

    /// A spinner for work whose amount is not known beforehand.
    pub fn spinner() -> Progress {
        let bar = ProgressBar::with_draw_target(None, target());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        // Ticks from indicatif's own thread: the work itself is one call.
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress(bar)
    }

    /// Sets the line's label.
    pub fn message(self, msg: impl Into<String>) -> Progress {
        self.0.set_message(msg.into());
        self
    }

    /// `n` more units done.
    pub fn inc(&self, n: u64) {
        self.0.inc(n);
    }

    /// Runs `f` (which prints) with the bar out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.0.suspend(f)
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // Also on an early return through `?`: the error line is not left
        // behind a half-drawn bar.
        self.0.finish_and_clear();
    }
}

fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}
