//! Waiting in the foreground for a container's init: its exit code as a shell reports it, and
//! the termination signals the waiting program receives passed on to the init meanwhile.
//! Shared by `imgsign run` (`Container::wait_forwarding`) and `imgsign runtime run`.

use nix::sys::signal::{kill, SigSet};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// Waits for `pid` to end: its exit code, or 128 + the signal that killed it.
pub(crate) fn exit_code(pid: i32) -> Result<i32, nix::Error> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// While alive, a thread takes the signals of `set` (which the caller has blocked in its own
/// thread) with `sigwait` and sends each to `pid`; dropped, it forwards nothing more.
pub(crate) struct Forwarder {
    done: std::sync::mpsc::Sender<()>,
}

impl Forwarder {
    pub(crate) fn start(pid: i32, set: SigSet) -> Self {
        let (done, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || loop {
            let Ok(signal) = set.wait() else { return };
            if done_rx.try_recv().is_ok() {
                return;
            }
            let _ = kill(Pid::from_raw(pid), signal);
        });
        Forwarder { done }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.done.send(());
    }
}
