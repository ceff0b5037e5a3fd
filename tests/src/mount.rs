//! A real FUSE mount of a test bucket, for end-to-end tests: the production core, driver and
//! transport, mounted on a fresh temporary directory, unmounted on drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use goofys_core::{Core, CoreConfig, UnixNanos};
use goofys_fuse::mount::{Mount, MountOptions, mount};
use goofys_s3::S3Client;

/// A mounted bucket. Use the filesystem under [`TestMount::path`] from blocking code
/// (`tokio::task::spawn_blocking`): the mount is served by the test's runtime.
#[derive(Debug)]
pub struct TestMount {
    mount: Option<Mount>,
    dir: tempfile::TempDir,
}

impl TestMount {
    /// Mounts `client`'s bucket with `config` on a new temporary directory.
    pub fn new(client: Arc<S3Client>, config: CoreConfig) -> TestMount {
        TestMount::with_options(client, config, MountOptions::default())
    }

    /// [`TestMount::new`] that every user may use (`allow_other`), for tools that switch
    /// users (pjdfstest); permissions are still checked by the kernel (`default_permissions`).
    pub fn for_all_users(client: Arc<S3Client>, config: CoreConfig) -> TestMount {
        TestMount::with_options(client, config, MountOptions { allow_other: true, ..MountOptions::default() })
    }

    /// Mounts with `options`; their mountpoint and file-system name are the test's own.
    fn with_options(client: Arc<S3Client>, config: CoreConfig, options: MountOptions) -> TestMount {
        let dir = tempfile::tempdir().expect("a temporary mountpoint");
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as i64;
        let core = Core::new(config, UnixNanos(wall), 1);
        let options = MountOptions { mountpoint: dir.path().to_owned(), fs_name: "goofys-rs-test".into(), ..options };
        let mount = mount(core, client, &options).expect("mounting the test bucket");
        TestMount { mount: Some(mount), dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the mount.
    pub fn join(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Runs `work` with the mount's root on a blocking thread (the mount is served by this
    /// runtime, so the filesystem must not be used from its tasks) and returns its result; a
    /// panic in `work` fails the caller with the same message.
    pub async fn use_files<T: Send + 'static>(&self, work: impl FnOnce(PathBuf) -> T + Send + 'static) -> T {
        let root = self.path().to_owned();
        match tokio::task::spawn_blocking(move || work(root)).await {
            Ok(value) => value,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }

    /// Unmounts and waits until the core is done.
    pub async fn unmount(mut self) {
        if let Some(mount) = self.mount.take() {
            mount.unmount().await.expect("unmounting the test bucket");
        }
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if self.mount.is_some() {
            // A test that panicked: remove the mount without waiting for the core.
            let _ = std::process::Command::new("fusermount3").arg("-u").arg("-z").arg(self.dir.path()).status();
        }
    }
}
