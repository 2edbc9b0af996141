//! Command-line definitions and dispatch.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

pub mod copy;
pub mod enforce;
pub mod enforced;
pub mod hook;
pub mod images;
pub mod keygen;
pub mod registry;
pub mod run;
pub mod runtime;
pub mod scope;
pub mod sign;
pub mod signed;
pub mod snapshot;
pub mod trust;
pub mod verify;

#[derive(Parser)]
#[command(name = "imgsign", version, about = "Signed per-file manifests of container images, enforced by the kernel")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Generate an Ed25519 key pair (encrypted PKCS#8 private key, SPKI public key).
    Keygen(keygen::Args),
    /// Manage a trust store directory (trusted keys, revoked keys, threshold).
    #[command(subcommand)]
    Trust(trust::Command),
    /// Sign the per-file manifest of an image.
    Sign(sign::Args),
    /// Verify an image against signed manifest bundle(s).
    Verify(verify::Args),
    /// Copy an image and its attached bundles between registries and OCI layouts.
    Copy(copy::Args),
    /// Fetch a registry image and its attached bundles into the local store, not unpacked (for --offline).
    Pull(copy::PullArgs),
    /// Node daemon: keep the kernel's allowed digests per cgroup current from a policy file.
    Enforce(enforce::Args),
    /// List the images in the local store.
    Images(images::ImagesArgs),
    /// Remove images from the local store (their files are freed by `gc`).
    Rmi(images::RmiArgs),
    /// Free store objects no image uses and stale temporaries.
    Gc(images::GcArgs),
    /// Verify an image, then run a command in it in a hardened container (exit code: the container's).
    Run(Box<run::Args>),
    /// List running containers (id, pid, status, image, signed digest, cgroup).
    Ps(run::PsArgs),
    /// Signal every task of a container (default SIGKILL).
    Kill(run::KillArgs),
    /// Stop every task of a container (cgroup freezer), for inspection.
    Freeze(run::FreezeArgs),
    /// Resume a frozen container.
    Thaw(run::FreezeArgs),
    /// Save a running or frozen container's writable layer, processes and state into a new directory.
    Snapshot(snapshot::Args),
    /// The OCI runtime (runc's command line) for podman, containerd and Kubernetes: refuses any
    /// container whose root file system does not match a manifest the node trusts. Also runs as
    /// `imgsign-runtime` (a symlink to this binary).
    Runtime(Box<runtime::Args>),
    /// OCI hooks (createRuntime, poststop) giving containers of a stock runc or crun the
    /// runtime's gate and enforcement scope (podman/CRI-O `hooks.d`).
    Hook(hook::Args),
    /// The runtime gate's own process (`imgsign runtime create` starts it; not for people).
    #[command(name = "runtime-gate-worker", hide = true)]
    RuntimeGateWorker(runtime::GateWorkerArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Keygen(args) => keygen::run(args),
        Command::Trust(cmd) => trust::run(cmd),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Copy(args) => copy::run(args),
        Command::Pull(args) => copy::pull(args),
        Command::Enforce(args) => enforce::run(args),
        Command::Images(args) => images::images(args),
        Command::Rmi(args) => images::rmi(args),
        Command::Gc(args) => images::gc(args),
        Command::Run(args) => run::run(*args),
        Command::Ps(args) => run::ps(args),
        Command::Kill(args) => run::kill(args),
        Command::Freeze(args) => run::freeze(args),
        Command::Thaw(args) => run::thaw(args),
        Command::Snapshot(args) => snapshot::run(args),
        Command::Runtime(args) => Ok(runtime::run(*args)),
        Command::Hook(args) => hook::run(args),
        Command::RuntimeGateWorker(args) => runtime::gate_worker(args),
    }
}
