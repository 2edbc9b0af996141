//! One lock for every fork this crate makes, so a multi-threaded caller cannot deadlock a child.
//!
//! libcontainer forks without exec and the child goes on running Rust code that takes std's
//! environment lock (`Executor::setup_envs` clears the environment with `remove_var`). If
//! another thread held that lock at the moment of the fork (reading the environment, or
//! `Command::spawn`, which holds it while it forks), the child inherits it held by a thread
//! that does not exist there and waits forever: seen as a container init stuck in
//! `futex_wait` under `RwLock::write` while its parent waits for it. Every `start` and every
//! process this crate spawns takes [`guard`] first, so containers started from several threads
//! of one process (a runtime, the test harness) are safe from each other. Threads of the
//! caller's own that touch the environment or spawn processes while a container starts are
//! the caller's to keep quiet, by taking [`guard`] around them too (the privileged tests
//! do, around the programs they compile); `imgsign run` is single-threaded when it starts one.

use std::sync::{Mutex, MutexGuard};

static FORKS: Mutex<()> = Mutex::new(());

/// Held across a fork (and, for libcontainer, until its children have exec'd or exited).
pub fn guard() -> MutexGuard<'static, ()> {
    // A panic while holding it poisons nothing that matters: the lock guards no data.
    FORKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
