//! What a run tells the person watching: event lines ("inject ...", "lift ...") on stderr, and
//! on a terminal a live status line (phase, request rate, errors) redrawn in place. When stdout
//! is not a terminal (CI, a pipe) there is no status line, only the event lines.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

pub struct Console {
    quiet: bool,
    live: bool,
    /// Whether a status line is on screen and must be cleared before the next event line.
    drawn: Mutex<bool>,
}

impl Console {
    pub fn new(quiet: bool) -> Self {
        let live = !quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Console {
            quiet,
            live,
            drawn: Mutex::new(false),
        }
    }

    /// An event line.
    pub fn say(&self, msg: impl AsRef<str>) {
        if self.quiet {
            return;
        }
        let mut drawn = self.drawn.lock().unwrap_or_else(|p| p.into_inner());
        let mut err = std::io::stderr().lock();
        if *drawn {
            let _ = write!(err, "\r\x1b[2K");
            *drawn = false;
        }
        let _ = writeln!(err, "{}", msg.as_ref());
    }

    /// Replaces the status line (terminals only).
    pub fn status(&self, text: &str) {
        if !self.live {
            return;
        }
        let mut drawn = self.drawn.lock().unwrap_or_else(|p| p.into_inner());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
        *drawn = true;
    }

    /// Removes the status line before the final report is printed.
    pub fn clear_status(&self) {
        let mut drawn = self.drawn.lock().unwrap_or_else(|p| p.into_inner());
        if *drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
            *drawn = false;
        }
    }
}
