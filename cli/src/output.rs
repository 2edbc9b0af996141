//! Exit codes, error printing and progress bars shared by every command.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use verifier_core::progress::Progress;

/// Success.
pub const EXIT_OK: ExitCode = ExitCode::SUCCESS;

/// Verification ran and failed.
pub fn exit_failed() -> ExitCode {
    ExitCode::from(1)
}

/// Bad usage or unreadable input.
pub fn exit_usage_or_input() -> ExitCode {
    ExitCode::from(2)
}

/// Prints an error and its whole `#[source]` chain on stderr.
pub fn print_error(err: &anyhow::Error) {
    eprintln!("imgsign: error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

/// Progress bars on stderr when it is a terminal; nothing otherwise.
pub fn progress() -> Arc<dyn Progress> {
    if std::io::stderr().is_terminal() {
        Arc::new(Bars { bar: std::sync::Mutex::new(None) })
    } else {
        Arc::new(verifier_core::progress::NoProgress)
    }
}

struct Bars {
    bar: std::sync::Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn begin(&self, what: &str, total: Option<u64>) {
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{msg:>16} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}").expect("valid template"),
            ),
        };
        bar.set_message(what.to_string());
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = self.bar.lock().expect("progress lock").as_ref() {
            bar.inc(bytes);
        }
    }

    fn end(&self) {
        if let Some(bar) = self.bar.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }
}
