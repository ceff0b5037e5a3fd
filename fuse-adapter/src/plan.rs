//! From parsed flags to what each layer needs: the transport's, the core's and the kernel
//! mount's configuration, checked against each other and against the host.
//!
//! Problems this module solves:
//! - One place maps goofys' flags onto `TransportConfig`, `CoreConfig` and `MountOptions`, so
//!   the meaning of a flag is written once and unit-tested without a mount.
//! - A flag the filesystem cannot honour yet (`--cache`) stops
//!   the mount with a one-line reason instead of being accepted and ignored.
//! - FUSE access and auto-unmount defaults that work for root and for ordinary users: root
//!   mounts get `allow_root` + `auto_unmount` (through fusermount3), so a killed process never
//!   leaves a dead mount; ordinary users get the same when /etc/fuse.conf has
//!   `user_allow_other`, and otherwise a mount without auto-unmount (the next mount cleans a
//!   dead one up, see [`crate::checks`]).
//! - The SSE-C key may come from the command line (with a warning: other users see it in the
//!   process list), a file, or `GOOFYS_SSE_C_KEY`, and never reaches a log.

use std::path::{Path, PathBuf};

use fuser::MountOption;
use goofys_core::CoreConfig;
use goofys_s3::{AddressingStyle, CredentialSource, ServerSideEncryption, SseCustomerKey, TransportConfig};

use crate::cli::{BucketSpec, MountArgs, SecretArg};
use crate::mount::MountOptions;

/// The environment variable that may hold the SSE-C key.
pub const SSE_C_KEY_ENV: &str = "GOOFYS_SSE_C_KEY";

/// A flag or option that cannot be used, with the reason and the fix, on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage_error(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// Facts about the host that decide defaults; detected once, given explicitly in tests.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HostFacts {
    pub uid: u32,
    pub gid: u32,
    pub is_root: bool,
    /// Where `fusermount3` is, if installed.
    pub fusermount3: Option<PathBuf>,
    /// Whether /etc/fuse.conf has `user_allow_other`.
    pub user_allow_other: bool,
    /// The value of [`SSE_C_KEY_ENV`].
    pub sse_c_key_env: Option<SecretArg>,
    /// Physical memory (MemTotal), for `--memory-limit`'s default.
    pub memory_bytes: u64,
}

impl HostFacts {
    pub fn detect() -> HostFacts {
        HostFacts {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            is_root: nix::unistd::geteuid().is_root(),
            fusermount3: crate::checks::find_on_path("fusermount3"),
            user_allow_other: std::fs::read_to_string("/etc/fuse.conf")
                .is_ok_and(|text| crate::checks::fuse_conf_allows_other(&text)),
            sse_c_key_env: std::env::var(SSE_C_KEY_ENV).ok().map(SecretArg),
            memory_bytes: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|meminfo| {
                    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?.to_owned();
                    line.split_whitespace().nth(1)?.parse::<u64>().ok()
                })
                .map_or(4 << 30, |kib| kib * 1024),
        }
    }
}

/// What the logging layer needs from the flags.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct LogSettings {
    pub log_file: Option<PathBuf>,
    pub debug_fuse: bool,
    pub debug_s3: bool,
}

/// Everything needed to mount, checked.
#[derive(Clone, Debug)]
pub struct MountPlan {
    pub source: BucketSpec,
    /// Absolute, not yet checked on disk (see [`crate::checks::prepare_mountpoint`]).
    pub mountpoint: PathBuf,
    pub transport: TransportConfig,
    pub core: CoreConfig,
    pub mount: MountOptions,
    pub foreground: bool,
    pub logging: LogSettings,
    /// Where Prometheus metrics are served, if asked for (loopback only).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Things the user should know, printed before mounting.
    pub warnings: Vec<String>,
}

impl MountPlan {
    pub fn new(args: MountArgs, host: &HostFacts) -> Result<MountPlan, UsageError> {
        reject_unsupported(&args)?;
        let mut warnings = Vec::new();
        let source = args.bucket.clone().ok_or_else(|| usage_error("no bucket given"))?;
        let mountpoint = absolute(args.mountpoint.as_deref().ok_or_else(|| usage_error("no mountpoint given"))?)?;
        if let Some(address) = args.metrics_addr
            && !address.ip().is_loopback()
        {
            return Err(usage_error(format!(
                "--metrics-addr {address} is not a loopback address: metrics are served on 127.0.0.1 or [::1] only"
            )));
        }
        if args.http_timeout.is_zero() {
            return Err(usage_error("--http-timeout must be more than 0, such as 30s"));
        }
        if let Some(endpoint) = &args.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(usage_error(format!(
                "--endpoint `{endpoint}` is not a URL: write it as http://host:port or https://host"
            )));
        }

        let encryption = encryption(&args, host, &mut warnings)?;
        let transport = TransportConfig {
            bucket: source.bucket.clone(),
            endpoint: args.endpoint.clone(),
            region: args.region.clone(),
            addressing: args.subdomain.then_some(AddressingStyle::VirtualHosted),
            credentials: if args.no_sign_request {
                CredentialSource::Anonymous
            } else {
                CredentialSource::DefaultChain { profile: args.profile.clone() }
            },
            encryption,
            storage_class: args.storage_class.clone(),
            canned_acl: args.acl.clone(),
            requester_pays: args.requester_pays,
            expected_bucket_owner: args.expected_bucket_owner.clone(),
            use_content_type: args.use_content_type,
            ca_bundle: args.ca_bundle.as_deref().map(absolute).transpose()?,
            request_timeout_ms: u64::try_from(args.http_timeout.as_millis()).unwrap_or(u64::MAX),
            ..TransportConfig::default()
        };

        let core = CoreConfig {
            stat_cache_ttl: args.stat_cache_ttl,
            type_cache_ttl: args.type_cache_ttl,
            // goofys has no flag for it; names known missing are trusted as long as names are.
            negative_cache_ttl: args.type_cache_ttl,
            file_mode: args.file_mode.0,
            dir_mode: args.dir_mode.0,
            uid: args.uid.unwrap_or(host.uid),
            gid: args.gid.unwrap_or(host.gid),
            s3_request_timeout: args.http_timeout,
            cheap_lookups: args.cheap,
            no_implicit_dirs: args.no_implicit_dir,
            ..memory_budget(
                args.memory_limit.map_or_else(|| default_memory_limit_bytes(host.memory_bytes), |mib| mib << 20),
            )
        }
        .with_mount_prefix(&source.prefix);

        let parsed = parse_mount_options(&args.options)?;
        let access = decide_access(
            &AccessRequest {
                allow_other: args.allow_other || parsed.allow_other,
                allow_root: parsed.allow_root,
                auto_unmount: parsed.auto_unmount,
            },
            host,
        )?;
        warnings.extend(access.warning.clone());
        let mount = MountOptions {
            mountpoint: mountpoint.clone(),
            fs_name: parsed.fs_name.unwrap_or_else(|| source.to_string()),
            read_only: args.read_only || parsed.read_only,
            allow_other: access.allow_other,
            allow_root: access.allow_root,
            auto_unmount: access.auto_unmount,
            extra: parsed.kernel_flags,
        };

        Ok(MountPlan {
            source,
            mountpoint,
            transport,
            core,
            mount,
            foreground: args.foreground,
            logging: LogSettings {
                log_file: args.log_file.as_deref().map(absolute).transpose()?,
                debug_fuse: args.debug_fuse,
                debug_s3: args.debug_s3,
            },
            metrics_addr: args.metrics_addr,
            warnings,
        })
    }
}

/// `--memory-limit`'s default: a quarter of RAM, from 256 MiB to 4 GiB.
pub fn default_memory_limit_bytes(memory_bytes: u64) -> u64 {
    (memory_bytes / 4).clamp(256 << 20, 4 << 30)
}

/// The core's buffers within `limit_bytes`: 3/8 for written data not yet in S3, 3/8 for
/// read-ahead across all open files, and a quarter left for what the core does not count (the
/// process, tokio, HTTP buffers, parts on their way out); a prefetch window per file is no
/// larger than a quarter of the read share (so several readers share it).
pub fn memory_budget(limit_bytes: u64) -> CoreConfig {
    let defaults = CoreConfig::default();
    let read_bytes = limit_bytes / 8 * 3;
    CoreConfig {
        max_dirty_bytes: read_bytes,
        max_read_buffer_bytes: read_bytes,
        prefetch_max_window_bytes: defaults.prefetch_max_window_bytes.min(read_bytes / 4),
        prefetch_initial_window_bytes: defaults.prefetch_initial_window_bytes.min(read_bytes / 4),
        ..defaults
    }
}

fn reject_unsupported(args: &MountArgs) -> Result<(), UsageError> {
    if args.cache.is_some() {
        return Err(usage_error(
            "--cache (goofys' local data cache through catfs) is not supported yet; mount without it: \
             reads are prefetched and the kernel's page cache keeps what was read",
        ));
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, UsageError> {
    std::path::absolute(path)
        .map_err(|error| usage_error(format!("cannot resolve the path {}: {error}", path.display())))
}

fn encryption(
    args: &MountArgs,
    host: &HostFacts,
    warnings: &mut Vec<String>,
) -> Result<ServerSideEncryption, UsageError> {
    let mut key_sources: Vec<(Vec<u8>, &str)> = Vec::new();
    if let Some(key) = &args.sse_c {
        warnings.push(
            "--sse-c on the command line is visible to other users of this machine (ps); \
             prefer --sse-c-key-file or the GOOFYS_SSE_C_KEY environment variable"
                .into(),
        );
        key_sources.push((key.0.as_bytes().to_vec(), "--sse-c"));
    }
    if let Some(path) = &args.sse_c_key_file {
        let bytes = std::fs::read(path)
            .map_err(|error| usage_error(format!("cannot read the SSE-C key file {}: {error}", path.display())))?;
        key_sources.push((bytes, "--sse-c-key-file"));
    }
    if let Some(key) = &host.sse_c_key_env {
        if args.sse || args.sse_kms.is_some() {
            return Err(usage_error(format!(
                "{SSE_C_KEY_ENV} (SSE-C) cannot be used with --sse or --sse-kms; choose one encryption"
            )));
        }
        key_sources.push((key.0.as_bytes().to_vec(), SSE_C_KEY_ENV));
    }
    if key_sources.len() > 1 {
        let origins: Vec<&str> = key_sources.iter().map(|(_, origin)| *origin).collect();
        return Err(usage_error(format!("an SSE-C key is given twice ({}); give it once", origins.join(" and "))));
    }
    let key_text = key_sources.pop();
    if let Some((text, origin)) = key_text {
        let key = SseCustomerKey::parse(&text).map_err(|error| usage_error(format!("{origin}: {error}")))?;
        return Ok(ServerSideEncryption::CustomerKey(key));
    }
    Ok(match &args.sse_kms {
        Some(key_id) => ServerSideEncryption::Kms { key_id: (!key_id.is_empty()).then(|| key_id.clone()) },
        None if args.sse => ServerSideEncryption::S3Managed,
        None => ServerSideEncryption::BucketDefault,
    })
}

/// `-o` options, sorted by who acts on them.
#[derive(Debug, Default, PartialEq, Eq)]
struct ParsedMountOptions {
    allow_other: bool,
    allow_root: bool,
    auto_unmount: Option<bool>,
    read_only: bool,
    fs_name: Option<String>,
    kernel_flags: Vec<MountOption>,
}

/// Options that only mount(8), systemd or the fstab reader act on.
fn is_fstab_only_option(option: &str) -> bool {
    matches!(option, "_netdev" | "nofail" | "noauto" | "auto" | "user" | "users" | "nouser" | "owner" | "group")
        || matches!(option, "defaults" | "rw")
        || option.starts_with("x-")
        || option.starts_with("comment=")
}

fn parse_mount_options(options: &[String]) -> Result<ParsedMountOptions, UsageError> {
    let mut parsed = ParsedMountOptions::default();
    for option in options {
        let flag = match option.as_str() {
            "allow_other" => {
                parsed.allow_other = true;
                continue;
            }
            "allow_root" => {
                parsed.allow_root = true;
                continue;
            }
            "auto_unmount" => {
                parsed.auto_unmount = Some(true);
                continue;
            }
            "ro" => {
                parsed.read_only = true;
                continue;
            }
            // Always on: the kernel checks permissions against the mode, uid and gid shown.
            "default_permissions" => continue,
            // Access times are never stored (atime is the object's mtime), so every atime
            // policy holds trivially.
            "atime" | "noatime" | "relatime" | "norelatime" | "strictatime" | "nostrictatime" | "diratime"
            | "nodiratime" | "lazytime" | "nolazytime" => continue,
            "dev" => MountOption::Dev,
            "nodev" => MountOption::NoDev,
            "suid" => MountOption::Suid,
            "nosuid" => MountOption::NoSuid,
            "exec" => MountOption::Exec,
            "noexec" => MountOption::NoExec,
            "sync" => MountOption::Sync,
            "async" => MountOption::Async,
            "dirsync" => MountOption::DirSync,
            other if is_fstab_only_option(other) => continue,
            other => {
                if let Some(name) = other.strip_prefix("fsname=") {
                    parsed.fs_name = Some(name.to_owned());
                    continue;
                }
                return Err(usage_error(format!(
                    "unknown mount option `-o {other}`: goofys-rs takes allow_other, allow_root, auto_unmount, ro, \
                     noexec, nodev, nosuid, fsname=NAME and fstab's _netdev, nofail, noauto; give other flags as \
                     -o --flag=value"
                )));
            }
        };
        parsed.kernel_flags.retain(|existing| !conflicts(existing, &flag));
        parsed.kernel_flags.push(flag);
    }
    Ok(parsed)
}

/// Whether two kernel flags say opposite things (the later one wins).
fn conflicts(a: &MountOption, b: &MountOption) -> bool {
    use MountOption::*;
    matches!(
        (a, b),
        (Dev, NoDev)
            | (NoDev, Dev)
            | (Suid, NoSuid)
            | (NoSuid, Suid)
            | (Exec, NoExec)
            | (NoExec, Exec)
            | (Sync, Async)
            | (Async, Sync)
    )
}

/// Who may use the mount, as asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessRequest {
    pub allow_other: bool,
    pub allow_root: bool,
    /// `None`: the default (on whenever it can work).
    pub auto_unmount: Option<bool>,
}

/// Who may use the mount, decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessDecision {
    pub allow_other: bool,
    pub allow_root: bool,
    pub auto_unmount: bool,
    pub warning: Option<String>,
}

/// Decides access and auto-unmount. fusermount3 implements auto-unmount (it stays behind and
/// unmounts when our process ends, however it ends), and it needs `allow_other` or `allow_root`
/// for that, which ordinary users may ask for only with `user_allow_other` in /etc/fuse.conf.
pub fn decide_access(request: &AccessRequest, host: &HostFacts) -> Result<AccessDecision, UsageError> {
    let may_allow_others = host.is_root || host.user_allow_other;
    if (request.allow_other || request.allow_root) && !may_allow_others {
        let option = if request.allow_other { "--allow-other" } else { "-o allow_root" };
        return Err(usage_error(format!(
            "{option} needs `user_allow_other` in /etc/fuse.conf for users other than root: add that line, \
             or mount without {option}"
        )));
    }
    if host.fusermount3.is_none() && !host.is_root {
        return Err(usage_error(
            "fusermount3 was not found on PATH: ordinary users mount FUSE through it; install FUSE 3 \
             (Debian/Ubuntu: sudo apt-get install fuse3)",
        ));
    }
    if request.auto_unmount == Some(true) {
        if host.fusermount3.is_none() {
            return Err(usage_error(
                "-o auto_unmount needs fusermount3, which was not found on PATH; install FUSE 3 \
                 (Debian/Ubuntu: sudo apt-get install fuse3)",
            ));
        }
        if !may_allow_others {
            return Err(usage_error(
                "-o auto_unmount needs `user_allow_other` in /etc/fuse.conf for users other than root: add that \
                 line, or mount without auto_unmount",
            ));
        }
    }
    let auto_unmount = request.auto_unmount.unwrap_or(host.fusermount3.is_some() && may_allow_others);
    let warning = (!auto_unmount).then(|| {
        let why = if host.fusermount3.is_none() {
            "fusermount3 was not found (install fuse3)"
        } else {
            "it needs `user_allow_other` in /etc/fuse.conf"
        };
        format!(
            "auto-unmount is off because {why}: if goofys-rs is killed, the mountpoint shows \"Transport endpoint \
             is not connected\" until `fusermount3 -u -z MOUNTPOINT` or the next goofys-rs mount there cleans it up"
        )
    });
    Ok(AccessDecision {
        allow_other: request.allow_other,
        // fuser runs auto-unmount only with allow_other or allow_root; allow_root is the
        // narrower: root may then use the mount too.
        allow_root: !request.allow_other && (request.allow_root || auto_unmount),
        auto_unmount,
        warning,
    })
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::time::Duration;

    use super::*;
    use crate::cli::{Invocation, try_parse_args};

    fn root_host() -> HostFacts {
        HostFacts {
            uid: 0,
            gid: 0,
            is_root: true,
            fusermount3: Some("/usr/bin/fusermount3".into()),
            user_allow_other: false,
            sse_c_key_env: None,
            memory_bytes: 8 << 30,
        }
    }

    fn user_host() -> HostFacts {
        HostFacts { uid: 1000, gid: 1000, is_root: false, ..root_host() }
    }

    fn plan(argv: &[&str], host: &HostFacts) -> Result<MountPlan, UsageError> {
        let argv = std::iter::once("goofys-rs").chain(argv.iter().copied()).map(OsString::from);
        match try_parse_args(argv).unwrap() {
            Invocation::Mount(args) => MountPlan::new(*args, host),
            other => panic!("{other:?}"),
        }
    }

    fn error(argv: &[&str], host: &HostFacts) -> String {
        plan(argv, host).unwrap_err().0
    }

    #[test]
    fn flags_reach_the_transport_the_core_and_the_mount() {
        let mapped = plan(
            &[
                "--endpoint",
                "http://127.0.0.1:8333",
                "--subdomain",
                "--region",
                "eu-west-1",
                "--no-sign-request",
                "--requester-pays",
                "--storage-class",
                "STANDARD_IA",
                "--sse",
                "--acl",
                "private",
                "--use-content-type",
                "--stat-cache-ttl",
                "5s",
                "--type-cache-ttl",
                "0",
                "--http-timeout",
                "10s",
                "--file-mode",
                "0600",
                "--dir-mode",
                "0700",
                "--uid",
                "7",
                "-o",
                "ro,noexec,_netdev,nofail,fsname=mine",
                "bucket:logs/2024",
                "/mnt/x",
            ],
            &root_host(),
        )
        .unwrap();
        let t = &mapped.transport;
        assert_eq!(t.bucket, "bucket");
        assert_eq!(t.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(t.addressing, Some(AddressingStyle::VirtualHosted));
        assert_eq!(t.region.as_deref(), Some("eu-west-1"));
        assert!(matches!(t.credentials, CredentialSource::Anonymous));
        assert!(t.requester_pays && t.use_content_type);
        assert_eq!(t.storage_class.as_deref(), Some("STANDARD_IA"));
        assert_eq!(t.encryption, ServerSideEncryption::S3Managed);
        assert_eq!(t.canned_acl.as_deref(), Some("private"));
        assert_eq!(t.request_timeout_ms, 10_000);
        let c = &mapped.core;
        assert_eq!(c.mount_prefix, "logs/2024/");
        assert_eq!(
            (c.stat_cache_ttl, c.type_cache_ttl, c.negative_cache_ttl),
            (Duration::from_secs(5), Duration::ZERO, Duration::ZERO)
        );
        assert_eq!(c.s3_request_timeout, Duration::from_secs(10));
        assert_eq!((c.file_mode, c.dir_mode, c.uid, c.gid), (0o600, 0o700, 7, 0));
        let m = &mapped.mount;
        assert_eq!(m.mountpoint, PathBuf::from("/mnt/x"));
        assert_eq!(m.fs_name, "mine");
        assert!(m.read_only);
        assert_eq!(m.extra, [MountOption::NoExec]);
        assert!(!mapped.foreground);
    }

    #[test]
    fn root_gets_allow_root_and_auto_unmount_by_default() {
        let root = plan(&["b", "/mnt"], &root_host()).unwrap();
        assert!(root.mount.auto_unmount && root.mount.allow_root && !root.mount.allow_other);
        assert!(root.warnings.is_empty(), "{:?}", root.warnings);
        assert_eq!(root.mount.fs_name, "b");
        assert!(matches!(root.transport.credentials, CredentialSource::DefaultChain { profile: None }));
    }

    #[test]
    fn an_ordinary_user_without_user_allow_other_mounts_without_auto_unmount_and_is_told() {
        let plain = plan(&["b", "/mnt"], &user_host()).unwrap();
        assert!(!plain.mount.auto_unmount && !plain.mount.allow_root && !plain.mount.allow_other);
        assert!(plain.warnings[0].contains("auto-unmount is off"), "{:?}", plain.warnings);
        assert!(error(&["--allow-other", "b", "/mnt"], &user_host()).contains("user_allow_other"));
        let with_conf = HostFacts { user_allow_other: true, ..user_host() };
        let allowed = plan(&["b", "/mnt"], &with_conf).unwrap();
        assert!(allowed.mount.auto_unmount && allowed.mount.allow_root);
        let no_fuse3 = HostFacts { fusermount3: None, ..user_host() };
        assert!(error(&["b", "/mnt"], &no_fuse3).contains("apt-get install fuse3"));
    }

    #[test]
    fn root_without_fusermount3_mounts_directly_without_auto_unmount() {
        let host = HostFacts { fusermount3: None, ..root_host() };
        let direct = plan(&["b", "/mnt"], &host).unwrap();
        assert!(!direct.mount.auto_unmount && !direct.mount.allow_root);
        assert!(direct.warnings[0].contains("fusermount3 was not found"));
        assert!(error(&["-o", "auto_unmount", "b", "/mnt"], &host).contains("needs fusermount3"));
    }

    #[test]
    fn unsupported_flags_stop_the_mount_with_a_reason() {
        assert!(error(&["--cache", "/var/cache", "b", "/mnt"], &root_host()).contains("not supported yet"));
        let cheap = plan(&["-o", "--cheap", "--no-implicit-dir", "b", "/mnt"], &root_host()).unwrap();
        assert!(cheap.core.cheap_lookups && cheap.core.no_implicit_dirs);
        assert!(error(&["-o", "bogus", "b", "/mnt"], &root_host()).contains("unknown mount option `-o bogus`"));
        assert!(error(&["--http-timeout", "0", "b", "/mnt"], &root_host()).contains("more than 0"));
        assert!(error(&["--endpoint", "127.0.0.1:9000", "b", "/mnt"], &root_host()).contains("not a URL"));
    }

    #[test]
    fn sse_c_keys_come_from_the_command_line_with_a_warning_a_file_or_the_environment() {
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // base64 of bytes 0..32
        let expected = ServerSideEncryption::CustomerKey(SseCustomerKey::parse(key.as_bytes()).unwrap());

        let from_flag = plan(&["--sse-c", key, "b", "/mnt"], &root_host()).unwrap();
        assert_eq!(from_flag.transport.encryption, expected);
        assert!(from_flag.warnings.iter().any(|w| w.contains("visible to other users")));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, format!("{key}\n")).unwrap();
        let from_file = plan(&["--sse-c-key-file", file.to_str().unwrap(), "b", "/mnt"], &root_host()).unwrap();
        assert_eq!(from_file.transport.encryption, expected);
        assert!(from_file.warnings.is_empty());

        let host = HostFacts { sse_c_key_env: Some(SecretArg(key.into())), ..root_host() };
        assert_eq!(plan(&["b", "/mnt"], &host).unwrap().transport.encryption, expected);
        assert!(error(&["--sse-c", key, "b", "/mnt"], &host).contains("given twice"));
        assert!(error(&["--sse", "b", "/mnt"], &host).contains("cannot be used with --sse"));

        let short = error(&["--sse-c", "c2hvcnQ=", "b", "/mnt"], &root_host());
        assert!(short.starts_with("--sse-c: an SSE-C key must be 32 bytes"), "{short}");
        assert!(!short.contains("c2hvcnQ="));
    }

    #[test]
    fn sse_kms_with_an_empty_key_id_means_the_default_key() {
        let plan_default = plan(&["--sse-kms", "", "b", "/mnt"], &root_host()).unwrap();
        assert_eq!(plan_default.transport.encryption, ServerSideEncryption::Kms { key_id: None });
        let plan_key = plan(&["--sse-kms=arn:key", "b", "/mnt"], &root_host()).unwrap();
        assert_eq!(plan_key.transport.encryption, ServerSideEncryption::Kms { key_id: Some("arn:key".into()) });
    }

    #[test]
    fn later_kernel_flags_override_earlier_opposites() {
        let flags = plan(&["-o", "nosuid,dev,suid,nodev", "b", "/mnt"], &root_host()).unwrap();
        assert_eq!(flags.mount.extra, [MountOption::Suid, MountOption::NoDev]);
    }

    #[test]
    fn memory_limit_splits_between_read_ahead_and_unwritten_data_and_metrics_stay_on_loopback() {
        let plan = |extra: &[&str]| {
            let mut argv = vec!["goofys-rs"];
            argv.extend_from_slice(extra);
            argv.extend_from_slice(&["bucket", "/mnt"]);
            match try_parse_args(argv.iter().map(std::ffi::OsString::from)) {
                Ok(Invocation::Mount(args)) => MountPlan::new(*args, &root_host()),
                other => panic!("{other:?}"),
            }
        };
        let limited = plan(&["--memory-limit", "256"]).unwrap();
        assert_eq!(
            limited.core.max_dirty_bytes + limited.core.max_read_buffer_bytes,
            192 << 20,
            "a quarter is headroom"
        );
        assert_eq!(limited.core.prefetch_max_window_bytes, 24 << 20, "four readers share the read share");
        let default = plan(&[]).unwrap();
        assert_eq!(
            default.core.max_dirty_bytes + default.core.max_read_buffer_bytes,
            (2 << 30) / 4 * 3,
            "three quarters of a quarter of 8 GiB"
        );
        assert_eq!(default_memory_limit_bytes(1 << 30), 256 << 20);
        assert_eq!(default_memory_limit_bytes(64 << 30), 4 << 30);
        assert!(plan(&["--metrics-addr", "127.0.0.1:9100"]).unwrap().metrics_addr.is_some());
        let error = plan(&["--metrics-addr", "0.0.0.0:9100"]).unwrap_err();
        assert!(error.to_string().contains("loopback"), "{error}");
    }
}
