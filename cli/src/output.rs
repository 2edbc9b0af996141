//! Exit codes, error printing and progress bars shared by every command.

use std::process::ExitCode;

/// The image verified.
pub const EXIT_OK: ExitCode = ExitCode::SUCCESS;
/// Verification ran and failed.
pub fn exit_failed() -> ExitCode {
    ExitCode::from(1)
}
/// Bad usage or unreadable input.
pub const EXIT_USAGE_OR_INPUT: ExitCode = ExitCode::FAILURE; // replaced below by `from(2)` at use

/// Prints an error and its whole `#[source]` chain on stderr.
pub fn print_error(err: &anyhow::Error) {
    eprintln!("imgsign: error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
