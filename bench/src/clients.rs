//! The clients the workload runs through: how each is found, named with its version, mounted
//! in the foreground as a child process (so its peak RSS can be read), and unmounted.
//!
//! A client whose program is not installed is skipped with a note; the raw client and the null
//! filesystem are this binary itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::server::ServerInfo;

/// How long a mount may take to appear.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to exit after `umount` (goofys-rs finishes uploads first).
const EXIT_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum ClientKind {
    GoofysRs,
    S3fs,
    RcloneOff,
    RcloneWrites,
    MountS3,
    NullFuse,
    RawS3,
}

impl ClientKind {
    pub const ALL: [ClientKind; 7] = [
        ClientKind::GoofysRs,
        ClientKind::S3fs,
        ClientKind::RcloneOff,
        ClientKind::RcloneWrites,
        ClientKind::MountS3,
        ClientKind::NullFuse,
        ClientKind::RawS3,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ClientKind::GoofysRs => "goofys-rs",
            ClientKind::S3fs => "s3fs",
            ClientKind::RcloneOff => "rclone-off",
            ClientKind::RcloneWrites => "rclone-writes",
            ClientKind::MountS3 => "mount-s3",
            ClientKind::NullFuse => "null-fuse",
            ClientKind::RawS3 => "raw-s3",
        }
    }

    pub fn from_name(name: &str) -> Option<ClientKind> {
        ClientKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// A peer: another S3 filesystem, as opposed to goofys-rs and the two ceilings.
    pub fn is_peer(self) -> bool {
        matches!(self, ClientKind::S3fs | ClientKind::RcloneOff | ClientKind::RcloneWrites | ClientKind::MountS3)
    }

    fn program_name(self) -> Option<&'static str> {
        match self {
            ClientKind::S3fs => Some("s3fs"),
            ClientKind::RcloneOff | ClientKind::RcloneWrites => Some("rclone"),
            ClientKind::MountS3 => Some("mount-s3"),
            ClientKind::GoofysRs | ClientKind::NullFuse | ClientKind::RawS3 => None,
        }
    }
}

/// Where the programs are.
#[derive(Clone, Debug)]
pub struct Programs {
    pub goofys_rs: PathBuf,
    /// This benchmark's own binary (raw client, null filesystem).
    pub bench: PathBuf,
}

impl Programs {
    /// The program that runs `kind`, or why it cannot run.
    pub fn find(&self, kind: ClientKind) -> Result<PathBuf, String> {
        match kind {
            ClientKind::GoofysRs => Ok(self.goofys_rs.clone()),
            ClientKind::NullFuse | ClientKind::RawS3 => Ok(self.bench.clone()),
            other => {
                let name = other.program_name().expect("peers have a program");
                find_on_path(name).ok_or_else(|| match other {
                    ClientKind::MountS3 => "mount-s3 is not installed (no package ships it here)".to_owned(),
                    _ => format!("`{name}` is not installed (apt-get install {name})"),
                })
            }
        }
    }

    /// The client's version, one line.
    pub fn version(&self, kind: ClientKind) -> String {
        let Ok(program) = self.find(kind) else {
            return "not installed".into();
        };
        let args: &[&str] = match kind {
            ClientKind::RcloneOff | ClientKind::RcloneWrites => &["version"],
            ClientKind::NullFuse | ClientKind::RawS3 => return format!("goofys-bench {}", env!("CARGO_PKG_VERSION")),
            _ => &["--version"],
        };
        first_line_of(&program, args)
    }
}

/// The first non-empty line a program prints (stdout, else stderr).
pub fn first_line_of(program: &Path, args: &[&str]) -> String {
    match Command::new(program).args(args).env_remove("AWS_CA_BUNDLE").output() {
        Ok(output) => {
            let text =
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
            text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("?").to_owned()
        }
        Err(error) => format!("unknown ({error})"),
    }
}

pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// A client mounted in the foreground.
#[derive(Debug)]
pub struct MountedClient {
    child: Child,
    mountpoint: PathBuf,
}

/// What every mount of a run needs.
#[derive(Clone, Debug)]
pub struct MountContext {
    pub programs: Programs,
    pub server: ServerInfo,
    /// Where configuration files and logs go.
    pub scratch: PathBuf,
    /// Extra arguments for the null filesystem (the layout's sizes).
    pub null_fuse_args: Vec<String>,
    /// `--metrics-addr` for goofys-rs, if metrics are read.
    pub goofys_metrics_addr: Option<String>,
    /// `--memory-limit` for goofys-rs, in MiB, if it has the option.
    pub goofys_memory_limit_mib: Option<u64>,
}

impl MountContext {
    fn command(&self, kind: ClientKind, mountpoint: &Path) -> anyhow::Result<Command> {
        let program = self.programs.find(kind).map_err(anyhow::Error::msg)?;
        let server = &self.server;
        let mut command = Command::new(&program);
        command.env("AWS_ACCESS_KEY_ID", &server.access_key).env("AWS_SECRET_ACCESS_KEY", &server.secret_key);
        match kind {
            ClientKind::GoofysRs => {
                command.arg("-f").arg("--endpoint").arg(&server.endpoint);
                if let Some(address) = &self.goofys_metrics_addr {
                    command.arg("--metrics-addr").arg(address);
                }
                if let Some(limit_mib) = self.goofys_memory_limit_mib {
                    command.arg("--memory-limit").arg(limit_mib.to_string());
                }
                command.arg(&server.bucket).arg(mountpoint);
            }
            ClientKind::S3fs => {
                let passwd = self.scratch.join("s3fs.passwd");
                fs::write(&passwd, format!("{}:{}\n", server.access_key, server.secret_key))?;
                fs::set_permissions(&passwd, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                command.arg(&server.bucket).arg(mountpoint).arg("-f").arg("-o").arg(format!(
                    "passwd_file={},url={},use_path_request_style,endpoint={}",
                    passwd.display(),
                    server.endpoint,
                    server.region
                ));
            }
            ClientKind::RcloneOff | ClientKind::RcloneWrites => {
                let config = self.scratch.join("rclone.conf");
                fs::write(
                    &config,
                    format!(
                        "[srv]\ntype = s3\nprovider = Other\naccess_key_id = {}\nsecret_access_key = {}\nendpoint = {}\nregion = {}\nforce_path_style = true\n",
                        server.access_key, server.secret_key, server.endpoint, server.region
                    ),
                )?;
                let mode = if kind == ClientKind::RcloneOff { "off" } else { "writes" };
                // rclone refuses to start when AWS_CA_BUNDLE is set (see testbed.md).
                command
                    .env_remove("AWS_CA_BUNDLE")
                    .arg("--config")
                    .arg(&config)
                    .arg("mount")
                    .arg(format!("srv:{}", server.bucket))
                    .arg(mountpoint)
                    .arg("--vfs-cache-mode")
                    .arg(mode)
                    .arg("--cache-dir")
                    .arg(self.scratch.join("rclone-cache"));
            }
            ClientKind::MountS3 => {
                command
                    .arg(&server.bucket)
                    .arg(mountpoint)
                    .arg("-f")
                    .arg("--endpoint-url")
                    .arg(&server.endpoint)
                    .arg("--force-path-style")
                    .arg("--region")
                    .arg(&server.region)
                    .arg("--allow-delete")
                    .arg("--allow-overwrite");
            }
            ClientKind::NullFuse => {
                command.arg("null-fuse").arg(mountpoint).args(&self.null_fuse_args);
            }
            ClientKind::RawS3 => bail!("the raw client does not mount"),
        }
        Ok(command)
    }

    /// Mounts `kind` on `mountpoint` and waits until the kernel serves it.
    pub fn mount(&self, kind: ClientKind, mountpoint: &Path) -> anyhow::Result<MountedClient> {
        fs::create_dir_all(mountpoint)?;
        let log = self.scratch.join(format!("{}.log", kind.name()));
        let log_file = fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let child = self
            .command(kind, mountpoint)?
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", kind.name()))?;
        let mut mounted = MountedClient { child, mountpoint: mountpoint.to_owned() };
        let started = Instant::now();
        while !is_mounted(mountpoint) {
            if let Some(status) = mounted.child.try_wait()? {
                bail!("{} exited with {status} before mounting; its log is {}", kind.name(), log.display());
            }
            if started.elapsed() > MOUNT_TIMEOUT {
                let _ = mounted.child.kill();
                let _ = mounted.child.wait();
                bail!("{} did not mount within {MOUNT_TIMEOUT:?}; its log is {}", kind.name(), log.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(mounted)
    }
}

impl MountedClient {
    /// The client's peak resident memory so far, in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib_of(self.child.id())
    }

    /// Unmounts and waits for the client to exit (killing it past [`EXIT_TIMEOUT`]).
    pub fn unmount(mut self) -> anyhow::Result<()> {
        let mut attempts = 0;
        while is_mounted(&self.mountpoint) {
            let status = Command::new("umount").arg(&self.mountpoint).stderr(Stdio::null()).status()?;
            if status.success() {
                break;
            }
            attempts += 1;
            if attempts > 50 {
                Command::new("umount").arg("-l").arg(&self.mountpoint).status()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let started = Instant::now();
        while self.child.try_wait()?.is_none() {
            if started.elapsed() > EXIT_TIMEOUT {
                self.child.kill()?;
                self.child.wait()?;
                bail!("the client did not exit within {EXIT_TIMEOUT:?} of umount and was killed");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

/// `VmHWM` of a process, in KiB.
pub fn peak_rss_kib_of(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm_kib(&status)
}

fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `mountpoint` is a mount point now (by /proc/self/mountinfo).
pub fn is_mounted(mountpoint: &Path) -> bool {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = mountpoint.to_string_lossy();
    mountinfo.lines().any(|line| line.split_whitespace().nth(4) == Some(wanted.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_read_from_vm_hwm() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t  173436 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(173_436));
        assert_eq!(parse_vm_hwm_kib("Name: x\n"), None);
        assert!(peak_rss_kib_of(std::process::id()).is_some_and(|kib| kib > 0));
    }

    #[test]
    fn every_client_has_a_name_that_maps_back() {
        for kind in ClientKind::ALL {
            assert_eq!(ClientKind::from_name(kind.name()), Some(kind));
        }
    }
}
