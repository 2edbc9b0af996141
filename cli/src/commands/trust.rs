//! `imgsign trust`: create and edit a trust store directory (trusted keys, revoked key ids, the
//! signature threshold) and show it. Each subcommand is one `keys::TrustStore` call; the layout is
//! documented in the `keys::trust` module.

use crate::output;
use anyhow::Context;
use keys::{KeyId, PublicKey, TrustStore};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Create a trust store in DIR (created if missing) with no keys.
    Init {
        dir: PathBuf,
        /// How many distinct, non-revoked trusted keys must sign.
        #[arg(long, default_value_t = 1)]
        threshold: usize,
    },
    /// Trust the given public key files (SPKI PEM); they are copied to DIR/keys/<keyid>.pub.
    Add {
        dir: PathBuf,
        #[arg(required = true, value_name = "KEY.pub")]
        keys: Vec<PathBuf>,
    },
    /// Revoke a key, given by key id or by its public key file.
    Revoke {
        dir: PathBuf,
        #[arg(value_name = "KEYID|KEY.pub")]
        key: String,
    },
    /// Set how many distinct, non-revoked trusted keys must sign.
    Threshold { dir: PathBuf, n: usize },
    /// Show the keys, revocations, threshold and recorded versions.
    Show {
        dir: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Init { dir, threshold } => {
            let store = TrustStore::init(&dir, threshold)?;
            println!("initialized trust store {} (threshold {})", store.dir().display(), store.threshold());
        }
        Command::Add { dir, keys } => {
            let mut store = TrustStore::open(&dir)?;
            // Read every file before changing anything, so one bad file adds nothing.
            let loaded = keys.iter().map(|p| PublicKey::load(p)).collect::<Result<Vec<_>, _>>()?;
            for (key, path) in loaded.iter().zip(&keys) {
                let existed = store.find(&key.key_id()).is_some();
                // Refuses a revoked key, even one whose file is still in keys/.
                let id = store.add_key(key)?;
                if existed {
                    println!("already trusted {id} ({})", path.display());
                } else {
                    println!("trusted {id} ({})", path.display());
                }
            }
        }
        Command::Revoke { dir, key } => {
            let mut store = TrustStore::open(&dir)?;
            let id = key_id_of(&key)?;
            store.revoke(&id)?;
            if store.find(&id).is_some() {
                println!("revoked {id}");
            } else {
                println!("revoked {id} (not a key in this trust store)");
            }
        }
        Command::Threshold { dir, n } => {
            let mut store = TrustStore::open(&dir)?;
            store.set_threshold(n)?;
            println!("threshold {}", store.threshold());
            warn_if_unreachable(&store);
        }
        Command::Show { dir, json } => {
            let store = TrustStore::open(&dir)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&show_json(&store))?);
            } else {
                show_text(&store);
            }
        }
    }
    Ok(output::EXIT_OK)
}

/// A key id, or the id of the public key in the file so named.
fn key_id_of(arg: &str) -> anyhow::Result<KeyId> {
    if let Ok(id) = arg.parse::<KeyId>() {
        return Ok(id);
    }
    let key = PublicKey::load(Path::new(arg))
        .with_context(|| format!("{arg:?} is neither a key id (64 hex digits) nor a readable public key file"))?;
    Ok(key.key_id())
}

fn warn_if_unreachable(store: &TrustStore) {
    let active = store.active_keys().len();
    if store.threshold() > active {
        eprintln!(
            "imgsign: warning: threshold {} is more than the {active} trusted non-revoked key(s); nothing will verify until more keys are added",
            store.threshold()
        );
    }
}

fn show_json(store: &TrustStore) -> serde_json::Value {
    let keys: Vec<_> = store
        .key_files()
        .map(|(key, path)| {
            let id = key.key_id();
            serde_json::json!({
                "key_id": id,
                "file": path,
                "revoked": store.is_revoked(&id),
            })
        })
        .collect();
    let revoked: Vec<_> = store.revoked_ids().collect();
    serde_json::json!({
        "dir": store.dir(),
        "threshold": store.threshold(),
        "keys": keys,
        "revoked": revoked,
        "versions": store.versions(),
    })
}

fn show_text(store: &TrustStore) {
    println!("trust store {}", store.dir().display());
    println!("threshold {} (of {} trusted non-revoked keys)", store.threshold(), store.active_keys().len());
    println!("keys:");
    if store.trusted_keys().is_empty() {
        println!("  (none)");
    }
    for (key, path) in store.key_files() {
        let id = key.key_id();
        let mark = if store.is_revoked(&id) { "  REVOKED" } else { "" };
        println!("  {id}  {}{mark}", path.display());
    }
    let other_revoked: Vec<_> = store.revoked_ids().filter(|id| store.find(id).is_none()).collect();
    if !other_revoked.is_empty() {
        println!("revoked ids without a key file:");
        for id in other_revoked {
            println!("  {id}");
        }
    }
    if !store.versions().is_empty() {
        println!("highest versions seen:");
        for (name, v) in store.versions() {
            println!("  {name}  {v}");
        }
    }
    warn_if_unreachable(store);
}
