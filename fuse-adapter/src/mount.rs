//! Mounting: the kernel session, the driver task, and an orderly end.
//!
//! Problems this module solves:
//! - One call that mounts and returns only once the kernel serves the mount, so a caller (the
//!   daemonising parent, a test) knows when the mountpoint is usable.
//! - Ending cleanly however the end comes: `umount`/`fusermount3 -u` (the kernel ends the
//!   session and the core shuts down), or a signal (the core shuts down first, finishing what
//!   it must, then the mount is removed). Either way the core reaches `Done`.
//! - A mount that is busy at a signal (a shell's working directory is inside it) cannot be
//!   unmounted normally. It is then detached lazily: it disappears from the tree at once, and
//!   processes still inside get errors. Waiting for them would keep a signalled process alive
//!   indefinitely, so the wait for the kernel session to end is bounded.
//! - The kernel reads ahead of a FUSE file at most the backing device's `read_ahead_kb`
//!   (128 KiB by default), whatever `max_readahead` the filesystem offers, so a sequential
//!   reader sent 128 KiB requests: eight kernel round trips per MiB. As root, the mount raises
//!   it to [`crate::adapter::MAX_IO_BYTES`] (as JuiceFS does); otherwise it stays as it is.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use fuser::{BackgroundSession, MountOption, SessionACL};
use goofys_core::Core;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::adapter::FuseAdapter;
use crate::driver::{S3Executor, spawn_invalidator};
use crate::metrics::Metrics;

/// How many kernel requests may wait for the driver before fuser threads block.
const REQUEST_QUEUE_LEN: usize = 1024;

/// How long the core may take to finish at a signal (pending uploads) before the mount is
/// removed anyway; under systemd's default stop timeout of 90 s.
const CORE_SHUTDOWN_WAIT: Duration = Duration::from_secs(60);

/// How long to wait, after unmounting, for the kernel session to end. Only a lazily detached
/// mount that processes still use takes longer; they get errors once this process exits.
const SESSION_END_WAIT: Duration = Duration::from_secs(2);

/// Kernel-side options of a mount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    /// What `mount` and `df` show as the source, e.g. `bucket:prefix`.
    pub fs_name: String,
    pub read_only: bool,
    /// Let other users access the mount (`allow_other`; needs `user_allow_other` in
    /// /etc/fuse.conf unless root).
    pub allow_other: bool,
    /// Let root access the mount.
    pub allow_root: bool,
    /// Remove the mount if this process dies (needs `allow_other` or `allow_root`).
    pub auto_unmount: bool,
    /// Further options as given with `-o` (`noexec`, `noatime`, `dev`, ...). `Dev` and `Suid`
    /// replace the default `nodev` and `nosuid`.
    pub extra: Vec<MountOption>,
}

impl MountOptions {
    fn fuser_config(&self) -> fuser::Config {
        let mut options = vec![
            MountOption::FSName(self.fs_name.clone()),
            MountOption::Subtype("goofys-rs".into()),
            MountOption::DefaultPermissions,
            if self.read_only { MountOption::RO } else { MountOption::RW },
        ];
        if !self.extra.contains(&MountOption::Dev) {
            options.push(MountOption::NoDev);
        }
        if !self.extra.contains(&MountOption::Suid) {
            options.push(MountOption::NoSuid);
        }
        if self.auto_unmount {
            options.push(MountOption::AutoUnmount);
        }
        options.extend(self.extra.iter().filter(|option| !options.contains(option)).cloned().collect::<Vec<_>>());
        let mut config = fuser::Config::default();
        config.mount_options = options;
        config.acl = if self.allow_other {
            SessionACL::All
        } else if self.allow_root {
            SessionACL::RootAndOwner
        } else {
            SessionACL::Owner
        };
        config
    }
}

/// A live mount: the kernel session and the driver task serving it.
#[derive(Debug)]
pub struct Mount {
    mountpoint: PathBuf,
    session: BackgroundSession,
    driver: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
    metrics: Arc<Metrics>,
}

/// Mounts `options.mountpoint` and starts serving it with `core`, running S3 requests with
/// `executor` on the current tokio runtime. Returns once the kernel has the mount.
pub fn mount<E: S3Executor>(core: Core, executor: Arc<E>, options: &MountOptions) -> anyhow::Result<Mount> {
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE_LEN);
    let mountpoint = options
        .mountpoint
        .canonicalize()
        .with_context(|| format!("cannot resolve mountpoint {}", options.mountpoint.display()))?;
    let session = fuser::spawn_mount(FuseAdapter::new(tx), &mountpoint, &options.fuser_config())
        .with_context(|| format!("mounting {} failed", mountpoint.display()))?;
    raise_read_ahead(&mountpoint);
    let invalidations = spawn_invalidator(session.notifier());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let stop = async move {
        let _ = stop_rx.await;
    };
    let metrics = Arc::new(Metrics::default());
    let driver = tokio::spawn(crate::driver::run(core, executor, rx, Some(invalidations), stop, Arc::clone(&metrics)));
    Ok(Mount { mountpoint, session, driver, stop: Some(stop_tx), metrics })
}

impl Mount {
    /// Serves until the mount is removed from outside (`umount`) or `signal` resolves; on a
    /// signal, lets the core finish, then unmounts.
    pub async fn serve_until(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        let stop = self.stop.take();
        tokio::select! {
            result = &mut self.driver => {
                result.context("the driver task failed")?;
                // The kernel ended the session (umount): wait for fuser's thread.
                let session = self.session;
                tokio::task::spawn_blocking(move || session.join()).await?.context("ending the FUSE session")?;
            }
            () = signal => {
                tracing::info!("unmounting");
                if let Some(stop) = stop {
                    let _ = stop.send(());
                }
                match tokio::time::timeout(CORE_SHUTDOWN_WAIT, &mut self.driver).await {
                    Ok(finished) => finished.context("the driver task failed")?,
                    Err(_) => {
                        tracing::error!(
                            wait_s = CORE_SHUTDOWN_WAIT.as_secs(),
                            "the core did not finish shutting down in time; unmounting anyway"
                        );
                        self.driver.abort();
                    }
                }
                let mountpoint = self.mountpoint.clone();
                let unmounted = tokio::task::spawn_blocking(move || unmount_mountpoint(&mountpoint))
                    .await?
                    .with_context(|| format!("unmounting {} failed", self.mountpoint.display()))?;
                if unmounted == Unmounted::Lazily {
                    tracing::warn!(
                        mountpoint = %self.mountpoint.display(),
                        "the mount was busy (a process has a file or its working directory in it): detached it \
                         lazily; processes still inside get errors"
                    );
                }
                // fuser's own unmount finds nothing left to do; this ends its thread.
                let session = self.session;
                let ended = tokio::time::timeout(
                    SESSION_END_WAIT,
                    tokio::task::spawn_blocking(move || session.umount_and_join()),
                )
                .await;
                match ended {
                    Ok(joined) => {
                        if let Err(error) = joined? {
                            tracing::debug!(%error, "fuser's unmount after ours");
                        }
                    }
                    Err(_) => tracing::warn!(
                        "processes still use the detached mount; they get errors once goofys-rs exits"
                    ),
                }
            }
        }
        Ok(())
    }

    /// The mount's metrics (S3 requests, FUSE operations, memory).
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The canonical path of the mountpoint.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts at once (the core shuts down first).
    pub async fn unmount(self) -> anyhow::Result<()> {
        self.serve_until(std::future::ready(())).await
    }
}

/// Lets the kernel read ahead of the mount's files in requests of up to
/// [`crate::adapter::MAX_IO_BYTES`] instead of 128 KiB (needs root to write sysfs; without it,
/// or if the mount is not found, nothing changes).
fn raise_read_ahead(mountpoint: &Path) {
    let Some(entry) = crate::checks::mount_at(mountpoint) else {
        tracing::debug!(mountpoint = %mountpoint.display(), "mount not in mountinfo: read-ahead left as it is");
        return;
    };
    let setting = PathBuf::from(format!("/sys/class/bdi/{}/read_ahead_kb", entry.device));
    let wanted_kib = u64::from(crate::adapter::MAX_IO_BYTES) / 1024;
    match raise_setting(&setting, wanted_kib) {
        Ok(()) => tracing::debug!(setting = %setting.display(), wanted_kib, "read-ahead raised"),
        Err(error) => tracing::debug!(setting = %setting.display(), %error, "read-ahead left as it is"),
    }
}

/// Writes `wanted` to the number in `path` if it holds less.
fn raise_setting(path: &Path, wanted: u64) -> io::Result<()> {
    let current: u64 = std::fs::read_to_string(path)?.trim().parse().map_err(io::Error::other)?;
    if current < wanted {
        std::fs::write(path, wanted.to_string())?;
    }
    Ok(())
}

/// How [`unmount_mountpoint`] went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unmounted {
    Cleanly,
    /// Busy: detached, gone once its last user leaves.
    Lazily,
    /// Someone unmounted it already.
    AlreadyGone,
}

/// Unmounts `mountpoint`: directly as root, through fusermount3 otherwise; lazily if busy.
fn unmount_mountpoint(mountpoint: &Path) -> io::Result<Unmounted> {
    use nix::errno::Errno;
    use nix::mount::{MntFlags, umount2};
    if nix::unistd::geteuid().is_root() {
        return match umount2(mountpoint, MntFlags::empty()) {
            Ok(()) => Ok(Unmounted::Cleanly),
            Err(Errno::EBUSY) => {
                umount2(mountpoint, MntFlags::MNT_DETACH)?;
                Ok(Unmounted::Lazily)
            }
            Err(Errno::EINVAL | Errno::ENOENT) => Ok(Unmounted::AlreadyGone),
            Err(error) => Err(error.into()),
        };
    }
    let fusermount = |lazy: bool| -> io::Result<(bool, String)> {
        let mut command = Command::new("fusermount3");
        command.arg("-u");
        if lazy {
            command.arg("-z");
        }
        let output = command.arg("--").arg(mountpoint).output()?;
        Ok((output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned()))
    };
    match fusermount(false)? {
        (true, _) => Ok(Unmounted::Cleanly),
        (false, stderr) if stderr.contains("busy") => match fusermount(true)? {
            (true, _) => Ok(Unmounted::Lazily),
            (false, stderr) => Err(io::Error::other(crate::checks::one_line(&stderr))),
        },
        (false, stderr) if stderr.contains("not found") || stderr.contains("not mounted") => Ok(Unmounted::AlreadyGone),
        (false, stderr) => Err(io::Error::other(crate::checks::one_line(&stderr))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_is_raised_never_lowered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("read_ahead_kb");
        std::fs::write(&path, "128\n").unwrap();
        raise_setting(&path, 1024).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1024");
        std::fs::write(&path, "4096\n").unwrap();
        raise_setting(&path, 1024).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "4096\n");
        assert!(raise_setting(&dir.path().join("missing"), 1024).is_err());
    }
}
