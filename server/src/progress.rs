//! Progress of long commands (`reindex`, `rules backtest`): a bar on a terminal, else
//! one plain line at most every few seconds, so logs and CI output stay readable.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(2);

pub struct Progress {
    what: &'static str,
    unit: &'static str,
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    done: u64,
    last_line: Option<Instant>,
}

impl Progress {
    pub fn new(what: &'static str, unit: &'static str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
                ))
                .expect("valid template"),
            );
            bar
        });
        Progress {
            what,
            unit,
            bar,
            total,
            done: 0,
            last_line: None,
        }
    }

    /// Set the position (and the total, when it is learnt late).
    pub fn set(&mut self, done: u64, total: u64) {
        self.done = done;
        self.total = total;
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            None => {
                if self.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY) {
                    self.line();
                }
            }
        }
    }

    pub fn inc(&mut self, n: u64) {
        self.set(self.done + n, self.total.max(self.done + n));
    }

    fn line(&mut self) {
        let percent = (self.done * 100).checked_div(self.total).unwrap_or(100);
        if self.unit == "%" {
            eprintln!("{}: {percent}%", self.what);
        } else {
            eprintln!(
                "{}: {}/{} {} ({percent}%)",
                self.what, self.done, self.total, self.unit
            );
        }
        self.last_line = Some(Instant::now());
    }

    pub fn finish(mut self) {
        match self.bar.take() {
            Some(bar) => bar.finish(),
            None => self.line(),
        }
    }
}
