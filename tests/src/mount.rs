//! A real FUSE mount of a test bucket, for end-to-end tests: the production core, driver and
//! transport, mounted on a fresh temporary directory, unmounted on drop.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use goofys_core::{Core, CoreConfig, UnixNanos};
use goofys_fuse::mount::{Mount, MountOptions, mount};
use goofys_s3::S3Client;

/// The file-system name of test mounts, followed by the test process's id.
const TEST_FS_NAME: &str = "goofys-rs-test-";

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
        capture_mount_warnings();
        remove_dead_test_mounts();
        let dir = tempfile::tempdir().expect("a temporary mountpoint");
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos() as i64;
        let core = Core::new(config, UnixNanos(wall), 1);
        // If the test process is killed, fusermount3 removes the mount (auto_unmount needs
        // allow_root or allow_other), so no dead mount outlives a test.
        let options = MountOptions {
            mountpoint: dir.path().to_owned(),
            fs_name: format!("{TEST_FS_NAME}{}", std::process::id()),
            allow_root: !options.allow_other,
            auto_unmount: true,
            ..options
        };
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

/// Sends the mount's warnings and errors to the test's captured output, so a failing test
/// shows what the mount saw (a passing test's output is dropped). The mount's threads are
/// started by the test, so their output is captured with the test's.
fn capture_mount_warnings() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // Another subscriber installed first (a test's own) is left in place.
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
            .with_test_writer()
            .try_init();
    });
}

/// Removes the mounts of test processes that were killed. `auto_unmount` does not always do it:
/// a test process killed while one of its threads waits on its own mount cannot finish dying
/// (nobody is left to answer that request), and keeps the mount alive. Aborting the FUSE
/// connection ends the wait; the mount is then detached.
fn remove_dead_test_mounts() {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(source) = line.split_once(" - ").and_then(|(_, after)| after.split(' ').nth(1)) else { continue };
        let Some(pid) = source.strip_prefix(TEST_FS_NAME).and_then(|pid| pid.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || process_is_alive(pid) {
            continue;
        }
        let (Some(device), Some(mountpoint)) = (fields.get(2), fields.get(4)) else { continue };
        if let Some((_, minor)) = device.split_once(':') {
            let connections = Path::new("/sys/fs/fuse/connections");
            if connections.read_dir().is_ok_and(|mut entries| entries.next().is_none()) {
                // The FUSE control file system is not mounted yet (root can mount it).
                let _ = std::process::Command::new("mount").args(["-t", "fusectl", "none"]).arg(connections).status();
            }
            let _ = std::fs::write(connections.join(minor).join("abort"), "1");
        }
        let mountpoint = mountpoint.replace("\\040", " ");
        let _ = std::process::Command::new("fusermount3").args(["-u", "-z"]).arg(&mountpoint).status();
        eprintln!("removed the mount on {mountpoint} left by killed test process {pid}");
    }
}

/// Whether process `pid` runs and is not a zombie.
fn process_is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name, which is in parentheses and may hold spaces.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}
