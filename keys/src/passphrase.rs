//! Where a private key's passphrase comes from: an environment variable, a file, or a prompt on the
//! controlling terminal. There is deliberately no way to pass the passphrase itself as a
//! command-line argument (it would show in `ps` and shell history). Passphrases are returned in
//! [`Zeroizing`] buffers and must not be empty. Errors are [`PassphraseError`]s; this module knows
//! nothing about keys.

use std::fmt;
use std::io::{self, IsTerminal};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

/// Errors from choosing a passphrase source or reading a passphrase from it. Messages name the
/// source at fault (the variable, the file); the underlying cause is in the `#[source]` chain.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PassphraseError {
    /// The environment variable meant to hold the passphrase is not set.
    #[error("environment variable {var} is not set (it should hold the passphrase)")]
    EnvUnset { var: String },
    /// The passphrase file could not be read.
    #[error("cannot read passphrase file {}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The passphrase is empty; keys are always encrypted.
    #[error("the passphrase from {origin} is empty")]
    Empty { origin: String },
    /// Reading the passphrase from the terminal failed.
    #[error("cannot read the passphrase from the terminal")]
    Prompt {
        #[source]
        source: io::Error,
    },
    /// The two passphrases typed differ.
    #[error("the passphrases do not match")]
    Mismatch,
    /// No passphrase source was given and there is no terminal to prompt on.
    #[error("no passphrase given: use --passphrase-env VAR, --passphrase-file FILE or set {var}, or run on a terminal to be prompted")]
    NoSource { var: &'static str },
    /// More than one passphrase source was given.
    #[error("give only one passphrase source")]
    ConflictingSources,
}

/// The environment variable used when no passphrase source is named.
pub const DEFAULT_PASSPHRASE_ENV: &str = "IMGSIGN_PASSPHRASE";

/// Where to read a passphrase from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassphraseSource {
    /// The value of this environment variable.
    Env(String),
    /// The contents of this file, less one trailing newline.
    File(PathBuf),
    /// Ask on the controlling terminal (`/dev/tty`), without echo.
    Prompt,
}

impl fmt::Display for PassphraseSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PassphraseSource::Env(var) => write!(f, "environment variable {var}"),
            PassphraseSource::File(path) => write!(f, "file {}", path.display()),
            PassphraseSource::Prompt => f.write_str("the terminal prompt"),
        }
    }
}

impl PassphraseSource {
    /// Chooses the source the way `imgsign` commands do: the named environment variable or file if
    /// one is given (not both); else [`DEFAULT_PASSPHRASE_ENV`] if it is set; else a prompt if
    /// standard input is a terminal; else [`PassphraseError::NoSource`].
    pub fn choose(env_var: Option<&str>, file: Option<&Path>) -> Result<Self, PassphraseError> {
        Self::choose_with(
            env_var,
            file,
            std::env::var_os(DEFAULT_PASSPHRASE_ENV).is_some(),
            std::io::stdin().is_terminal(),
        )
    }

    /// [`PassphraseSource::choose`] with the environment facts passed in (for tests).
    pub fn choose_with(
        env_var: Option<&str>,
        file: Option<&Path>,
        default_env_set: bool,
        interactive: bool,
    ) -> Result<Self, PassphraseError> {
        match (env_var, file) {
            (Some(_), Some(_)) => Err(PassphraseError::ConflictingSources),
            (Some(var), None) => Ok(PassphraseSource::Env(var.to_string())),
            (None, Some(path)) => Ok(PassphraseSource::File(path.to_path_buf())),
            (None, None) if default_env_set => Ok(PassphraseSource::Env(DEFAULT_PASSPHRASE_ENV.to_string())),
            (None, None) if interactive => Ok(PassphraseSource::Prompt),
            (None, None) => Err(PassphraseError::NoSource { var: DEFAULT_PASSPHRASE_ENV }),
        }
    }
}

/// Reads a passphrase from `source`. With `confirm`, a prompt asks twice and the answers must
/// match (use it when creating a key). A file's contents lose one trailing `\n` (or `\r\n`).
/// An empty passphrase is an error.
pub fn read_passphrase(source: &PassphraseSource, confirm: bool) -> Result<Zeroizing<Vec<u8>>, PassphraseError> {
    read_passphrase_with_prompt(source, confirm, "Passphrase: ")
}

/// [`read_passphrase`] with the text of the terminal prompt chosen by the caller (for example
/// naming the key file it is for). Other sources ignore `prompt_text`.
pub fn read_passphrase_with_prompt(
    source: &PassphraseSource,
    confirm: bool,
    prompt_text: &str,
) -> Result<Zeroizing<Vec<u8>>, PassphraseError> {
    let pass = match source {
        PassphraseSource::Env(var) => match std::env::var_os(var) {
            Some(v) => Zeroizing::new(v.into_vec()),
            None => return Err(PassphraseError::EnvUnset { var: var.clone() }),
        },
        PassphraseSource::File(path) => {
            let mut data = Zeroizing::new(
                std::fs::read(path).map_err(|source| PassphraseError::ReadFile { path: path.clone(), source })?,
            );
            if data.last() == Some(&b'\n') {
                data.pop();
                if data.last() == Some(&b'\r') {
                    data.pop();
                }
            }
            data
        }
        PassphraseSource::Prompt => {
            let first = prompt(prompt_text)?;
            if confirm {
                let second = prompt("Confirm passphrase: ")?;
                if *first != *second {
                    return Err(PassphraseError::Mismatch);
                }
            }
            first
        }
    };
    if pass.is_empty() {
        return Err(PassphraseError::Empty { origin: source.to_string() });
    }
    Ok(pass)
}

fn prompt(text: &str) -> Result<Zeroizing<Vec<u8>>, PassphraseError> {
    // rpassword opens /dev/tty itself, so this works even when stdin/stdout are redirected.
    let mut s = rpassword::prompt_password(text).map_err(|source| PassphraseError::Prompt { source })?;
    let bytes = Zeroizing::new(s.as_bytes().to_vec());
    s.zeroize();
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_source_strips_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pass");
        std::fs::write(&p, b"s3cret\n\n").unwrap();
        let got = read_passphrase(&PassphraseSource::File(p.clone()), false).unwrap();
        assert_eq!(&got[..], b"s3cret\n");
        std::fs::write(&p, b"s3cret\r\n").unwrap();
        assert_eq!(&read_passphrase(&PassphraseSource::File(p.clone()), false).unwrap()[..], b"s3cret");
        std::fs::write(&p, b" spaced ").unwrap();
        assert_eq!(&read_passphrase(&PassphraseSource::File(p.clone()), false).unwrap()[..], b" spaced ");
        std::fs::write(&p, b"\n").unwrap();
        let err = read_passphrase(&PassphraseSource::File(p.clone()), false).unwrap_err();
        assert!(matches!(err, PassphraseError::Empty { .. }), "{err:?}");
        assert!(err.to_string().contains(&p.display().to_string()), "{err}");
        let missing = dir.path().join("missing");
        let err = read_passphrase(&PassphraseSource::File(missing.clone()), false).unwrap_err();
        assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
    }

    #[test]
    fn env_source() {
        // A variable name unique to this test: tests run in parallel threads.
        let var = "IMGSIGN_KEYS_TEST_PASSPHRASE_ENV_SOURCE";
        let err = read_passphrase(&PassphraseSource::Env(var.into()), false).unwrap_err();
        assert!(matches!(err, PassphraseError::EnvUnset { .. }), "{err:?}");
        assert!(err.to_string().contains(var));
        std::env::set_var(var, "from env\n");
        let got = read_passphrase(&PassphraseSource::Env(var.into()), true).unwrap();
        assert_eq!(&got[..], b"from env\n", "env values are taken verbatim");
        std::env::set_var(var, "");
        assert!(matches!(
            read_passphrase(&PassphraseSource::Env(var.into()), false),
            Err(PassphraseError::Empty { .. })
        ));
        std::env::remove_var(var);
    }

    #[test]
    fn choosing_a_source() {
        let f = Path::new("/p");
        assert_eq!(
            PassphraseSource::choose_with(Some("V"), None, true, true).unwrap(),
            PassphraseSource::Env("V".into())
        );
        assert_eq!(PassphraseSource::choose_with(None, Some(f), true, true).unwrap(), PassphraseSource::File(f.into()));
        assert!(matches!(
            PassphraseSource::choose_with(Some("V"), Some(f), false, false),
            Err(PassphraseError::ConflictingSources)
        ));
        assert_eq!(
            PassphraseSource::choose_with(None, None, true, true).unwrap(),
            PassphraseSource::Env(DEFAULT_PASSPHRASE_ENV.into())
        );
        assert_eq!(PassphraseSource::choose_with(None, None, false, true).unwrap(), PassphraseSource::Prompt);
        assert!(matches!(
            PassphraseSource::choose_with(None, None, false, false),
            Err(PassphraseError::NoSource { .. })
        ));
    }
}
