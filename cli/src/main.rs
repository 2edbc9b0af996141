//! `imgsign`: a thin shell over the library crates. Each command lives in `commands/` and is a
//! library call plus argument parsing and output formatting.

use clap::Parser;
use imgsign_cli::{commands, output};
use std::process::ExitCode;

fn main() -> ExitCode {
    // Engines want a runtime binary: invoked as `imgsign-runtime`, the whole argv is the runtime's.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = argv.first().map(std::path::Path::new).and_then(|p| p.file_name());
    if invoked_as.is_some_and(|name| name == commands::runtime::RUNTIME_NAME) {
        return commands::runtime::main_as_runtime(argv);
    }
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            output::print_error(&err);
            output::exit_usage_or_input()
        }
    }
}
