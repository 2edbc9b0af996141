//! `cargo xtask`: developer tasks for the imgsign workspace.
//!
//! `cargo xtask lab` boots real Debian kernels under QEMU and runs the
//! BPF-LSM tests inside them (the machine's own kernel refuses BPF-LSM).

mod lab;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "imgsign developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Kernel lab: run the in-VM tests inside Debian kernels under QEMU.
    Lab(lab::LabArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Lab(args) => lab::main(args),
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
