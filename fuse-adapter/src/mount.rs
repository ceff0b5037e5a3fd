//! Mounting: the kernel session, the driver task, and an orderly end.
//!
//! Problems this module solves:
//! - One call that mounts and returns only once the kernel serves the mount, so a caller (the
//!   daemonising parent, a test) knows when the mountpoint is usable.
//! - Ending cleanly however the end comes: `umount`/`fusermount3 -u` (the kernel ends the
//!   session and the core shuts down), or a signal (the core shuts down first, finishing what
//!   it must, then the mount is removed). Either way the core reaches `Done`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use fuser::{BackgroundSession, MountOption, SessionACL};
use goofys_core::Core;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::adapter::FuseAdapter;
use crate::driver::{S3Executor, spawn_invalidator};

/// How many kernel requests may wait for the driver before fuser threads block.
const REQUEST_QUEUE_LEN: usize = 1024;

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
    /// Further options for the kernel, as given with `-o`.
    pub extra: Vec<String>,
}

impl MountOptions {
    fn fuser_config(&self) -> fuser::Config {
        let mut options = vec![
            MountOption::FSName(self.fs_name.clone()),
            MountOption::Subtype("goofys-rs".into()),
            MountOption::DefaultPermissions,
            MountOption::NoDev,
            MountOption::NoSuid,
            if self.read_only { MountOption::RO } else { MountOption::RW },
        ];
        if self.auto_unmount {
            options.push(MountOption::AutoUnmount);
        }
        options.extend(self.extra.iter().map(|option| MountOption::CUSTOM(option.clone())));
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
    session: BackgroundSession,
    driver: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

/// Mounts `options.mountpoint` and starts serving it with `core`, running S3 requests with
/// `executor` on the current tokio runtime. Returns once the kernel has the mount.
pub fn mount<E: S3Executor>(core: Core, executor: Arc<E>, options: &MountOptions) -> anyhow::Result<Mount> {
    let (tx, rx) = mpsc::channel(REQUEST_QUEUE_LEN);
    let session = fuser::spawn_mount(FuseAdapter::new(tx), &options.mountpoint, &options.fuser_config())
        .with_context(|| format!("mounting {}", options.mountpoint.display()))?;
    let invalidations = spawn_invalidator(session.notifier());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let stop = async move {
        let _ = stop_rx.await;
    };
    let driver = tokio::spawn(crate::driver::run(core, executor, rx, Some(invalidations), stop));
    Ok(Mount { session, driver, stop: Some(stop_tx) })
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
                (&mut self.driver).await.context("the driver task failed")?;
                let session = self.session;
                tokio::task::spawn_blocking(move || session.umount_and_join())
                    .await?
                    .context("unmounting")?;
            }
        }
        Ok(())
    }

    /// Unmounts at once (the core shuts down first).
    pub async fn unmount(self) -> anyhow::Result<()> {
        self.serve_until(std::future::ready(())).await
    }
}
