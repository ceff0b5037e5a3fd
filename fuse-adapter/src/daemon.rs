//! Running in the background, goofys-style: the command returns only once the mount is ready
//! (exit 0), or fails with the background process's own one-line error (exit 1).
//!
//! Problems this module solves:
//! - A mount command in a script or in fstab must not return before the mountpoint works, and
//!   must fail visibly when it cannot work. The parent forks, the child does the work and
//!   writes one line on a pipe: `ready`, or `error <message>`; the parent waits for it and
//!   exits accordingly. A child that dies first closes the pipe, and the parent reports how it
//!   died.
//! - Forking a multi-threaded process is unsound, so the fork happens first, before the tokio
//!   runtime or any other thread starts; [`daemonize`] checks that.
//! - The child works from `/` (so it keeps no directory busy). Until it is ready it stays in
//!   the terminal's process group, so a Ctrl-C during a slow start stops both processes; once
//!   ready it leaves the terminal's session (setsid) and points stdin, stdout and stderr at
//!   /dev/null, so that it holds no pipe of whoever started it (a shell's `$(...)`, mount(8)).
#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Write as _};

use nix::fcntl::OFlag;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid};

/// Which side of the fork we are on.
#[derive(Debug)]
pub enum Forked {
    /// The parent, after the child reported (or died).
    Parent(ChildOutcome),
    /// The child, which must report through this.
    Child(Readiness),
}

/// What the child reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildOutcome {
    Ready,
    Failed(String),
}

/// The child's end of the readiness pipe.
#[derive(Debug)]
pub struct Readiness {
    pipe: File,
}

impl Readiness {
    /// Tells the parent the mount is ready, then leaves the terminal's session and lets go of
    /// the parent's stdio.
    pub fn ready(mut self) {
        let _ = writeln!(self.pipe, "ready");
        if let Err(error) = nix::unistd::setsid() {
            tracing::warn!(%error, "cannot leave the terminal's session");
        }
        detach_stdio();
    }

    /// Tells the parent why the mount failed (one line).
    pub fn failed(mut self, message: &str) {
        let _ = writeln!(self.pipe, "error {}", crate::checks::one_line(message));
    }
}

/// Forks. Must be called while the process has a single thread.
pub fn daemonize() -> io::Result<Forked> {
    let threads = std::fs::read_dir("/proc/self/task").map(|tasks| tasks.count()).unwrap_or(1);
    if threads > 1 {
        return Err(io::Error::other(format!("cannot daemonise a process that already runs {threads} threads")));
    }
    // O_CLOEXEC: helpers the child starts later (fusermount3) must not inherit the pipe, or
    // the parent would not see it close when the child dies.
    let (read_end, write_end) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: the process has one thread (checked above), so the child cannot inherit a lock
    // held by another thread; the child goes on running ordinary Rust code, as any
    // single-threaded program after fork may.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => {
            drop(write_end);
            Ok(Forked::Parent(wait_for_report(File::from(read_end), child)))
        }
        ForkResult::Child => {
            drop(read_end);
            std::env::set_current_dir("/")?;
            Ok(Forked::Child(Readiness { pipe: File::from(write_end) }))
        }
    }
}

/// Reads the child's report; if the pipe closes without one, says how the child ended.
fn wait_for_report(pipe: File, child: Pid) -> ChildOutcome {
    let mut line = String::new();
    let _ = BufReader::new(pipe).read_line(&mut line);
    let line = line.trim_end();
    if line == "ready" {
        return ChildOutcome::Ready;
    }
    if let Some(message) = line.strip_prefix("error ") {
        return ChildOutcome::Failed(message.to_owned());
    }
    let how = match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
        Ok(WaitStatus::Signaled(_, signal, _)) => format!("was killed by {signal}"),
        Ok(other) => format!("ended ({other:?})"),
        Err(error) => format!("could not be waited for ({error})"),
    };
    ChildOutcome::Failed(format!(
        "the background goofys-rs process {how} before the mount was ready; run with -f to see its logs"
    ))
}

/// Points stdin, stdout and stderr at /dev/null.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}
