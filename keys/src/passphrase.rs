//! Where a private key's passphrase comes from: an environment variable, a file, or a prompt on the
//! controlling terminal. There is deliberately no way to pass the passphrase itself as a
//! command-line argument (it would show in `ps` and shell history). Passphrases are returned in
//! [`Zeroizing`] buffers and must not be empty. Errors are [`KeyError`]s.

use crate::key::KeyError;
use std::fmt;
use std::io::IsTerminal;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

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
    /// standard input is a terminal; else [`KeyError::NoPassphraseSource`].
    pub fn choose(env_var: Option<&str>, file: Option<&Path>) -> Result<Self, KeyError> {
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
    ) -> Result<Self, KeyError> {
        match (env_var, file) {
            (Some(_), Some(_)) => Err(KeyError::ConflictingPassphraseSources),
            (Some(var), None) => Ok(PassphraseSource::Env(var.to_string())),
            (None, Some(path)) => Ok(PassphraseSource::File(path.to_path_buf())),
            (None, None) if default_env_set => Ok(PassphraseSource::Env(DEFAULT_PASSPHRASE_ENV.to_string())),
            (None, None) if interactive => Ok(PassphraseSource::Prompt),
            (None, None) => Err(KeyError::NoPassphraseSource { var: DEFAULT_PASSPHRASE_ENV }),
        }
    }
}

/// Reads a passphrase from `source`. With `confirm`, a prompt asks twice and the answers must
/// match (use it when creating a key). A file's contents lose one trailing `\n` (or `\r\n`).
/// An empty passphrase is an error.
pub fn read_passphrase(source: &PassphraseSource, confirm: bool) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    read_passphrase_with_prompt(source, confirm, "Passphrase: ")
}

/// [`read_passphrase`] with the text of the terminal prompt chosen by the caller (for example
/// naming the key file it is for). Other sources ignore `prompt_text`.
pub fn read_passphrase_with_prompt(
    source: &PassphraseSource,
    confirm: bool,
    prompt_text: &str,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let pass = match source {
        PassphraseSource::Env(var) => match std::env::var_os(var) {
            Some(v) => Zeroizing::new(v.into_vec()),
            None => return Err(KeyError::PassphraseEnvUnset { var: var.clone() }),
        },
        PassphraseSource::File(path) => {
            let mut data = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Io {
                action: "cannot read passphrase file",
                path: path.clone(),
                source,
            })?);
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
                    return Err(KeyError::PassphraseMismatch);
                }
            }
            first
        }
    };
    if pass.is_empty() {
        return Err(KeyError::EmptyPassphrase { origin: source.to_string() });
    }
    Ok(pass)
}

fn prompt(text: &str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    // rpassword opens /dev/tty itself, so this works even when stdin/stdout are redirected.
    let mut s = rpassword::prompt_password(text).map_err(|source| KeyError::Prompt { source })?;
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
        assert!(matches!(err, KeyError::EmptyPassphrase { .. }), "{err:?}");
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
        assert!(matches!(err, KeyError::PassphraseEnvUnset { .. }), "{err:?}");
        assert!(err.to_string().contains(var));
        std::env::set_var(var, "from env\n");
        let got = read_passphrase(&PassphraseSource::Env(var.into()), true).unwrap();
        assert_eq!(&got[..], b"from env\n", "env values are taken verbatim");
        std::env::set_var(var, "");
        assert!(matches!(
            read_passphrase(&PassphraseSource::Env(var.into()), false),
            Err(KeyError::EmptyPassphrase { .. })
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
            Err(KeyError::ConflictingPassphraseSources)
        ));
        assert_eq!(
            PassphraseSource::choose_with(None, None, true, true).unwrap(),
            PassphraseSource::Env(DEFAULT_PASSPHRASE_ENV.into())
        );
        assert_eq!(PassphraseSource::choose_with(None, None, false, true).unwrap(), PassphraseSource::Prompt);
        assert!(matches!(
            PassphraseSource::choose_with(None, None, false, false),
            Err(KeyError::NoPassphraseSource { .. })
        ));
    }
}
