//! The runtime's log, as runc writes it: with `--log FILE --log-format json`, one JSON object
//! per line (`{"level":"error","msg":"...","time":"..."}`), which podman and containerd's shim
//! read back to show the reason of a failure in their own error; with `text`, logrus-style
//! text lines. Errors also go to stderr (runc does both). Debug lines only with `--debug`.

use std::io::Write as _;
use std::path::Path;

pub struct Log {
    file: Option<std::fs::File>,
    json: bool,
    debug: bool,
}

impl Log {
    /// Opens `path` for appending; if it cannot be opened, logs go to stderr only (the reason
    /// is said there).
    pub fn open(path: Option<&Path>, format: Option<&str>, debug: bool) -> Log {
        let json = format == Some("json");
        let file = path.and_then(|p| match std::fs::OpenOptions::new().create(true).append(true).open(p) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("imgsign runtime: cannot open the log {}: {e}", p.display());
                None
            }
        });
        Log { file, json, debug }
    }

    pub fn error(&mut self, msg: &str) {
        eprintln!("imgsign runtime: error: {msg}");
        self.write("error", msg);
    }

    pub fn warn(&mut self, msg: &str) {
        if self.file.is_none() {
            eprintln!("imgsign runtime: warning: {msg}");
        }
        self.write("warning", msg);
    }

    pub fn debug(&mut self, msg: &str) {
        if !self.debug {
            return;
        }
        if self.file.is_none() {
            eprintln!("imgsign runtime: debug: {msg}");
        }
        self.write("debug", msg);
    }

    fn write(&mut self, level: &str, msg: &str) {
        let Some(file) = self.file.as_mut() else { return };
        let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let line = if self.json {
            serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
        } else {
            format!("time={time:?} level={level} msg={msg:?}")
        };
        let _ = writeln!(file, "{line}");
    }
}

/// An error and its causes on one line, as runc prints them (`outer: cause: cause`).
pub fn chain(err: &anyhow::Error) -> String {
    err.chain().map(|e| e.to_string()).collect::<Vec<_>>().join(": ")
}
