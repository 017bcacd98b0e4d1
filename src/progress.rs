//! Progress bars on a terminal, nothing otherwise; and the one line that
//! says what a command did, printed unless the user asked for quiet.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Shared by every step of a command, so bars of steps that run at the
/// same time stack instead of overwriting each other.
#[derive(Clone)]
pub struct Progress {
    multi: Option<MultiProgress>,
    quiet: bool,
}

impl Progress {
    /// Bars appear only when stderr is a terminal and the user asked for
    /// neither quiet nor JSON output.
    pub fn new(quiet: bool, json: bool) -> Self {
        let enabled = !quiet && !json && std::io::stderr().is_terminal();
        Progress {
            multi: enabled.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            quiet,
        }
    }

    /// A warning on stderr, above any bars; nothing with --quiet.
    pub fn warn(&self, msg: &str) {
        if self.quiet {
            return;
        }
        let line = format!("rustimage: warning: {msg}");
        match &self.multi {
            Some(m) => {
                let _ = m.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// The closing line on stderr (what was written or pushed), after
    /// every bar is gone; nothing with --quiet.
    pub fn done(&self, line: &str) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
        if !self.quiet {
            eprintln!("rustimage: {line}");
        }
    }

    fn add(&self, bar: ProgressBar) -> ProgressBar {
        match &self.multi {
            Some(m) => m.add(bar),
            None => ProgressBar::hidden(),
        }
    }

    /// A byte-counting bar; hidden when progress is off.
    pub fn bytes(&self, message: &str, total: u64) -> ProgressBar {
        if self.multi.is_none() {
            return ProgressBar::hidden();
        }
        let bar = self.add(ProgressBar::new(total));
        let style = ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// A counting bar (packages read); `total` 0 when unknown.
    pub fn count(&self, message: &str, total: u64) -> ProgressBar {
        if self.multi.is_none() {
            return ProgressBar::hidden();
        }
        let bar = self.add(ProgressBar::no_length());
        if total > 0 {
            bar.set_length(total);
        }
        let style = ProgressStyle::with_template("{msg:>10} {pos} {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// One bar per blob being pushed.
    pub fn blobs(&self) -> Blobs {
        Blobs {
            multi: self.multi.clone(),
            bars: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

/// Bars for blobs in flight, keyed by digest.
pub struct Blobs {
    multi: Option<indicatif::MultiProgress>,
    bars: std::sync::Mutex<std::collections::HashMap<String, ProgressBar>>,
}

impl Blobs {
    /// `sent` bytes of `size` for `digest`; `None` when the blob is done.
    pub fn update(&self, digest: &str, sent: Option<u64>, size: u64) {
        let Some(multi) = &self.multi else { return };
        let Ok(mut bars) = self.bars.lock() else {
            return;
        };
        match sent {
            Some(n) => {
                let bar = bars.entry(digest.to_string()).or_insert_with(|| {
                    let bar = multi.add(ProgressBar::new(size));
                    let style = ProgressStyle::with_template(
                        "{msg:>19} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                    bar.set_style(style);
                    bar.set_message(digest.chars().take(19).collect::<String>());
                    bar
                });
                bar.set_position(n);
            }
            None => {
                if let Some(bar) = bars.remove(digest) {
                    bar.finish_and_clear();
                    multi.remove(&bar);
                }
            }
        }
    }

    pub fn clear(&self) {
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }
}
