//! `imgsign`: a thin shell over the library crates. Each command lives in `commands/` and is a
//! library call plus argument parsing and output formatting.

mod commands;
mod output;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            output::print_error(&err);
            output::exit_usage_or_input()
        }
    }
}
