//! The `goofys-rs` binary under test: starting it against a test server with an isolated AWS
//! environment, waiting for its mount, stopping it, and cleaning up whatever happens.
//!
//! Every mount a test makes lives on a [`Mountpoint`]: when it drops (the test passed, failed
//! or panicked), every goofys-rs process serving it is killed and any mount left on it is
//! detached, before the directory is removed. A hung FUSE mount never outlives a test.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::seaweedfs::{ACCESS_KEY, SECRET_KEY};

/// How long a mount may take to appear.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// A `goofys-rs` command with the test server's keys and nothing else from the host's AWS
/// setup (no ~/.aws files, no instance metadata, no GOOFYS_* variables).
pub fn goofys_command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    isolate_aws_environment(&mut command, ACCESS_KEY, SECRET_KEY);
    command
}

/// Gives `command` exactly these AWS keys and no other AWS or goofys configuration.
pub fn isolate_aws_environment(command: &mut Command, access_key: &str, secret_key: &str) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("AWS_") || name.starts_with("GOOFYS_") {
            command.env_remove(&name);
        }
    }
    command
        .env("AWS_ACCESS_KEY_ID", access_key)
        .env("AWS_SECRET_ACCESS_KEY", secret_key)
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// Whether /proc/self/mountinfo lists a mount at exactly `path`.
pub fn is_mounted(path: &Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    text.lines().any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

/// The file-system type of the mount at `path` (`fuse.goofys-rs`), if mounted.
pub fn mount_type(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    text.lines()
        .rev()
        .filter(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
        .find_map(|line| line.split_once(" - ").and_then(|(_, after)| after.split(' ').next().map(str::to_owned)))
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Process ids of running goofys-rs processes (not fusermount3) whose arguments mention
/// `needle`.
pub fn goofys_processes_mentioning(needle: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            let args: Vec<String> =
                cmdline.split(|&b| b == 0).map(|arg| String::from_utf8_lossy(arg).into_owned()).collect();
            let is_goofys =
                args.first().is_some_and(|argv0| argv0.contains("goofys-rs") && !argv0.contains("fusermount"));
            let is_zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')));
            is_goofys && !is_zombie && args.iter().any(|arg| arg.contains(needle))
        })
        .collect()
}

/// Whether process `pid` still runs (a zombie does not count).
pub fn process_is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// A fresh directory to mount on, cleaned up on drop: goofys-rs processes serving it are
/// killed and any mount on it is detached first.
#[derive(Debug)]
pub struct Mountpoint {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Mountpoint {
    pub fn new() -> Mountpoint {
        let dir = tempfile::Builder::new().prefix("goofys-mnt-").tempdir().expect("a temporary mountpoint");
        let path = dir.path().canonicalize().expect("a canonical mountpoint path");
        Mountpoint { dir: Some(dir), path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, relative: &str) -> PathBuf {
        self.path.join(relative)
    }

    /// The path as a string, for command lines.
    pub fn arg(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Waits until the mountpoint is mounted.
    pub fn wait_mounted(&self) -> bool {
        wait_until(MOUNT_TIMEOUT, || is_mounted(&self.path))
    }

    /// Waits until nothing is mounted on it (5 s at most).
    pub fn wait_unmounted(&self) -> bool {
        wait_until(Duration::from_secs(5), || !is_mounted(&self.path))
    }
}

impl Default for Mountpoint {
    fn default() -> Self {
        Mountpoint::new()
    }
}

impl Drop for Mountpoint {
    fn drop(&mut self) {
        for pid in goofys_processes_mentioning(&self.arg()) {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        }
        for _ in 0..5 {
            if !is_mounted(&self.path) {
                break;
            }
            let _ = Command::new("umount").arg("-l").arg(&self.path).stderr(Stdio::null()).status();
            let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(&self.path).stderr(Stdio::null()).status();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// A goofys-rs process run with `-f`, its stderr kept in a file for failure messages.
#[derive(Debug)]
pub struct ForegroundProcess {
    child: Option<Child>,
    stderr_dir: tempfile::TempDir,
}

impl ForegroundProcess {
    /// Spawns `command` (which must include `-f`) with stdout and stderr captured to files.
    pub fn spawn(mut command: Command) -> ForegroundProcess {
        let stderr_dir = tempfile::tempdir().expect("a directory for the process's output");
        let stderr = File::create(stderr_dir.path().join("stderr")).expect("a stderr file");
        let stdout = File::create(stderr_dir.path().join("stdout")).expect("a stdout file");
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("cannot start goofys-rs (was it built?)");
        ForegroundProcess { child: Some(child), stderr_dir }
    }

    /// Spawns `command` and waits until a live mount is on `mountpoint` (a dead one left by a
    /// killed process does not count: it cannot be listed); panics with the process's stderr
    /// if it exits first or the mount does not appear.
    pub fn mount(command: Command, mountpoint: &Mountpoint) -> ForegroundProcess {
        let is_new_mount = || is_mounted(mountpoint.path()) && std::fs::read_dir(mountpoint.path()).is_ok();
        let mut process = ForegroundProcess::spawn(command);
        let mounted = wait_until(MOUNT_TIMEOUT, || is_new_mount() || process.has_exited());
        assert!(
            mounted && is_new_mount(),
            "goofys-rs did not mount {} (exited: {}); stderr:\n{}",
            mountpoint.path().display(),
            process.has_exited(),
            process.stderr()
        );
        process
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    pub fn has_exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|child| child.try_wait().ok().flatten().is_some())
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_dir.path().join("stderr")).unwrap_or_default()
    }

    /// What it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.stderr_dir.path().join("stdout")).unwrap_or_default()
    }

    /// Sends `signal` (such as "TERM", "INT", "KILL").
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal} failed");
    }

    /// Waits for the process to exit (20 s at most) and returns its status.
    pub fn wait(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("waiting for goofys-rs") {
                self.child = None;
                return status;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "goofys-rs did not exit; stderr:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ForegroundProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The bucket a client of a path-style endpoint talks to (the last segment of its URL).
pub fn bucket_name(client: &goofys_s3::S3Client) -> String {
    client.bucket_url().trim_end_matches('/').rsplit('/').next().expect("a bucket URL has a path").to_owned()
}
