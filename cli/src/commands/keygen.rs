//! `imgsign keygen`: generate an Ed25519 key pair, `PREFIX.key` (encrypted PKCS#8 PEM, mode 0600)
//! and `PREFIX.pub` (SPKI PEM, mode 0644). Neither file may exist. The passphrase comes from
//! `--passphrase-env VAR`, `--passphrase-file FILE`, `$IMGSIGN_PASSPHRASE`, or a prompt (asked twice)
//! when standard input is a terminal; never from an argument value. All logic is in `keys`.

use crate::output;
use keys::{Kdf, PassphraseSource, SigningKey};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Write PREFIX.key (encrypted private key, mode 0600) and PREFIX.pub (public key, mode 0644).
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// Read the passphrase from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "passphrase_file")]
    pub passphrase_env: Option<String>,
    /// Read the passphrase from this file (one trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Print {"key_id", "private_key", "public_key"} as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Fail before asking for a passphrase if either file is already there.
    keys::check_keypair_absent(&args.out)?;
    let source = PassphraseSource::choose(args.passphrase_env.as_deref(), args.passphrase_file.as_deref())?;
    let passphrase = keys::read_passphrase(&source, true)?;
    let key = SigningKey::generate();
    let files = keys::write_keypair(&args.out, &key, &passphrase, Kdf::default())?;
    if args.json {
        println!("{}", serde_json::to_string(&files)?);
    } else {
        println!("{}", files.key_id);
        eprintln!(
            "wrote {} (encrypted private key) and {} (public key)",
            files.private_key.display(),
            files.public_key.display()
        );
    }
    Ok(output::EXIT_OK)
}
