//! The command line: goofys' flags with goofys' meanings and defaults, grouped under help
//! headings, plus the `demo` command.
//!
//! Problems this module solves:
//! - goofys users keep their command lines and fstab entries: every goofys flag exists here
//!   with the same name, meaning and default (`--stat-cache-ttl 1m`, `--file-mode 0644`, ...),
//!   and durations use goofys' (Go's) syntax: `1m`, `30s`, `1h30m`, `500ms`, `0`.
//! - Values are checked while parsing, so a bad value (`--file-mode 999`, `--stat-cache-ttl
//!   soon`) stops the program with one line naming the flag, before anything is mounted.
//! - `goofys-rs demo [mountpoint]` lives beside the mount form `goofys-rs bucket[:prefix]
//!   mountpoint`; a bucket named `demo` is still reachable as `demo:`.
//!
//! What the flags *do* (transport, core and kernel settings, checks between flags) is decided
//! in [`crate::plan`]; how mount(8) and fstab options become these flags is in
//! [`crate::mount_helper`].

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};

const MOUNT_OPTIONS: &str = "Mount options";
const BUCKET_OPTIONS: &str = "Bucket options";
const OBJECT_OPTIONS: &str = "New object options";
const CACHING_OPTIONS: &str = "Caching options";
const TUNING_OPTIONS: &str = "Tuning options";
const LOGGING_OPTIONS: &str = "Logging options";

/// Mount an S3 bucket as a local directory (FUSE), goofys-style.
#[derive(Parser, Debug)]
#[command(
    name = "goofys-rs",
    bin_name = "goofys-rs",
    version,
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true,
    term_width = 100,
    after_help = "Credentials come from the usual AWS places: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                  ~/.aws/credentials and ~/.aws/config (see --profile), web identity, ECS or EC2 instance \
                  roles. Logs go to stderr with -f, else to syslog or --log-file; GOOFYS_LOG sets the filter \
                  (e.g. GOOFYS_LOG=debug)."
)]
pub struct CliArgs {
    #[command(subcommand)]
    pub command: Option<CliCommand>,

    #[command(flatten)]
    pub mount: MountArgs,

    /// Print the version
    #[arg(short = 'v', short_alias = 'V', long, action = ArgAction::Version)]
    version: Option<bool>,
}

/// Commands other than mounting.
#[derive(Subcommand, Debug)]
pub enum CliCommand {
    /// Start a local, in-memory S3 server with sample objects and mount it: try goofys-rs without
    /// a cloud account. Ctrl-C unmounts and cleans up.
    Demo(DemoArgs),
}

/// `goofys-rs demo [mountpoint]`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct DemoArgs {
    /// Where to mount (created if missing); default: a new temporary directory
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: Option<PathBuf>,
}

/// `goofys-rs [options] bucket[:prefix] mountpoint`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct MountArgs {
    /// The bucket, and optionally a key prefix to show as the root (`bucket:logs/2024`)
    #[arg(value_name = "BUCKET[:PREFIX]", required = true, value_parser = parse_bucket_spec)]
    pub bucket: Option<BucketSpec>,

    /// An existing directory to mount on
    #[arg(value_name = "MOUNTPOINT", required = true)]
    pub mountpoint: Option<PathBuf>,

    /// Mount options such as allow_other, allow_root, ro, noexec, auto_unmount; repeatable or
    /// comma-separated; `-o --flag=value` gives any flag below (for fstab)
    #[arg(short = 'o', value_name = "OPTION", action = ArgAction::Append, help_heading = MOUNT_OPTIONS)]
    pub options: Vec<String>,

    /// Stay in the foreground (by default goofys-rs returns once the mount is ready and keeps
    /// serving in the background)
    #[arg(short = 'f', long = "foreground", help_heading = MOUNT_OPTIONS)]
    pub foreground: bool,

    /// Mount read-only
    #[arg(long, help_heading = MOUNT_OPTIONS)]
    pub read_only: bool,

    /// Let other users access the mount (non-root users need `user_allow_other` in
    /// /etc/fuse.conf)
    #[arg(long, help_heading = MOUNT_OPTIONS)]
    pub allow_other: bool,

    /// Permission bits of directories, in octal
    #[arg(long, value_name = "MODE", default_value = "0755", value_parser = parse_mode, help_heading = MOUNT_OPTIONS)]
    pub dir_mode: Mode,

    /// Permission bits of files, in octal
    #[arg(long, value_name = "MODE", default_value = "0644", value_parser = parse_mode, help_heading = MOUNT_OPTIONS)]
    pub file_mode: Mode,

    /// Owner of every file and directory [default: the current user]
    #[arg(long, value_name = "UID", help_heading = MOUNT_OPTIONS)]
    pub uid: Option<u32>,

    /// Group of every file and directory [default: the current group]
    #[arg(long, value_name = "GID", help_heading = MOUNT_OPTIONS)]
    pub gid: Option<u32>,

    /// Non-AWS endpoint, such as http://127.0.0.1:8333 (path-style unless --subdomain)
    #[arg(long, value_name = "URL", help_heading = BUCKET_OPTIONS)]
    pub endpoint: Option<String>,

    /// The bucket's region [default: detected, starting from us-east-1]
    #[arg(long, value_name = "REGION", help_heading = BUCKET_OPTIONS)]
    pub region: Option<String>,

    /// Use virtual-host addressing (https://bucket.endpoint/key) with --endpoint
    #[arg(long, help_heading = BUCKET_OPTIONS)]
    pub subdomain: bool,

    /// Named profile from ~/.aws/credentials and ~/.aws/config [default: AWS_PROFILE or
    /// `default`]
    #[arg(long, value_name = "NAME", help_heading = BUCKET_OPTIONS)]
    pub profile: Option<String>,

    /// Send requests unsigned (public buckets)
    #[arg(long, conflicts_with = "profile", help_heading = BUCKET_OPTIONS)]
    pub no_sign_request: bool,

    /// Accept the charges of a requester-pays bucket
    #[arg(long, help_heading = BUCKET_OPTIONS)]
    pub requester_pays: bool,

    /// Fail unless the bucket belongs to this AWS account id
    #[arg(long, value_name = "ACCOUNT_ID", help_heading = BUCKET_OPTIONS)]
    pub expected_bucket_owner: Option<String>,

    /// PEM file of CA certificates to trust besides the system's, for an endpoint with a
    /// private CA
    #[arg(long, value_name = "PATH", help_heading = BUCKET_OPTIONS)]
    pub ca_bundle: Option<PathBuf>,

    /// Storage class of new objects, such as STANDARD_IA [default: the bucket's, STANDARD on
    /// AWS]
    #[arg(long, value_name = "CLASS", value_parser = parse_storage_class, help_heading = OBJECT_OPTIONS)]
    pub storage_class: Option<String>,

    /// Encrypt new objects with SSE-S3
    #[arg(long, help_heading = OBJECT_OPTIONS)]
    pub sse: bool,

    /// Encrypt new objects with SSE-KMS and this key id (empty: the account's default key)
    #[arg(long, value_name = "KEY_ID", help_heading = OBJECT_OPTIONS)]
    pub sse_kms: Option<String>,

    /// SSE-C key (base64 of 32 bytes) for reading and writing objects; other users can see it
    /// in the process list, prefer --sse-c-key-file or GOOFYS_SSE_C_KEY
    #[arg(long, value_name = "KEY", conflicts_with_all = ["sse", "sse_kms"], help_heading = OBJECT_OPTIONS)]
    pub sse_c: Option<SecretArg>,

    /// Read the SSE-C key from this file (32 raw bytes or their base64)
    #[arg(long, value_name = "PATH", conflicts_with_all = ["sse", "sse_kms", "sse_c"], help_heading = OBJECT_OPTIONS)]
    pub sse_c_key_file: Option<PathBuf>,

    /// Canned ACL of new objects
    #[arg(long, value_name = "ACL", value_parser = CANNED_ACLS, help_heading = OBJECT_OPTIONS)]
    pub acl: Option<String>,

    /// Set Content-Type of new objects from their file extension
    #[arg(long, help_heading = OBJECT_OPTIONS)]
    pub use_content_type: bool,

    /// How long file and directory attributes are cached (0: off)
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration, help_heading = CACHING_OPTIONS)]
    pub stat_cache_ttl: Duration,

    /// How long names (file, directory, or missing) are cached (0: off)
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_duration, help_heading = CACHING_OPTIONS)]
    pub type_cache_ttl: Duration,

    /// Local data cache directory (goofys' catfs cache): not supported yet
    #[arg(long, value_name = "DIR", help_heading = CACHING_OPTIONS)]
    pub cache: Option<String>,

    /// Timeout of one S3 request; it is retried after it
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration, help_heading = TUNING_OPTIONS)]
    pub http_timeout: Duration,

    /// Fewer S3 requests at some cost in speed: a lookup lists `name/` only if HEAD finds no
    /// object (a file then hides a directory of the same name)
    #[arg(long, help_heading = TUNING_OPTIONS)]
    pub cheap: bool,

    /// Assume every directory has a `dir/` marker object: a lookup HEADs the marker instead of
    /// listing (directories without one are found only by listing their parent)
    #[arg(long, help_heading = TUNING_OPTIONS)]
    pub no_implicit_dir: bool,

    /// Memory for file data, in MiB: read-ahead buffers plus written data not yet in S3
    /// [default: a quarter of RAM, from 256 MiB to 4096 MiB]
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(64..), help_heading = TUNING_OPTIONS)]
    pub memory_limit: Option<u64>,

    /// Write logs to this file (created owner-only) instead of stderr or syslog
    #[arg(long, value_name = "PATH", help_heading = LOGGING_OPTIONS)]
    pub log_file: Option<PathBuf>,

    /// Log every FUSE request and reply
    #[arg(long = "debug_fuse", help_heading = LOGGING_OPTIONS)]
    pub debug_fuse: bool,

    /// Log every S3 request and its outcome
    #[arg(long = "debug_s3", help_heading = LOGGING_OPTIONS)]
    pub debug_s3: bool,

    /// Serve Prometheus metrics at http://ADDRESS/metrics (a loopback address such as
    /// 127.0.0.1:9100)
    #[arg(long, value_name = "ADDRESS", help_heading = LOGGING_OPTIONS)]
    pub metrics_addr: Option<SocketAddr>,
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Mount(Box<MountArgs>),
    Demo(DemoArgs),
    /// mount(8) called us as a helper with `-f` (fake): do everything but mount, i.e. nothing.
    FakeMount,
}

/// Parses the process arguments (after [`crate::mount_helper`] has turned mount(8)'s and
/// fstab's forms into flags). Prints help, the version or a usage error and exits on those.
pub fn parse_args(argv: impl IntoIterator<Item = OsString>) -> Invocation {
    match try_parse_args(argv) {
        Ok(invocation) => invocation,
        Err(error) => error.exit(),
    }
}

/// [`parse_args`] without exiting.
pub fn try_parse_args(argv: impl IntoIterator<Item = OsString>) -> Result<Invocation, clap::Error> {
    let argv = match crate::mount_helper::normalize_argv(argv.into_iter().collect()) {
        Ok(crate::mount_helper::Normalized::Args(argv)) => argv,
        Ok(crate::mount_helper::Normalized::FakeMount) => return Ok(Invocation::FakeMount),
        Err(message) => return Err(clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{message}\n"))),
    };
    let args = CliArgs::try_parse_from(argv)?;
    Ok(match args.command {
        Some(CliCommand::Demo(demo)) => Invocation::Demo(demo),
        None => Invocation::Mount(Box::new(args.mount)),
    })
}

/// `bucket[:prefix]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BucketSpec {
    pub bucket: String,
    /// As typed after the colon; normalised by the core (`a/b`, `/a/b/` → `a/b/`).
    pub prefix: String,
}

impl fmt::Display for BucketSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() { f.write_str(&self.bucket) } else { write!(f, "{}:{}", self.bucket, self.prefix) }
    }
}

fn parse_bucket_spec(text: &str) -> Result<BucketSpec, String> {
    let (bucket, prefix) = text.split_once(':').unwrap_or((text, ""));
    if bucket.is_empty() {
        return Err("the bucket name is empty; write `bucket` or `bucket:prefix`".into());
    }
    if let Some(bad) = bucket.chars().find(|c| c.is_whitespace() || c.is_control() || *c == '/') {
        return Err(format!("a bucket name cannot contain {bad:?}; write `bucket` or `bucket:prefix`"));
    }
    Ok(BucketSpec { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
}

/// Permission bits given in octal.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Mode(pub u16);

/// The largest mode: permission bits plus setuid, setgid and sticky.
const MODE_MAX: u32 = 0o7777;

/// Parses an octal mode: `0644`, `644` or `0o644`.
pub fn parse_mode(text: &str) -> Result<Mode, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() {
        return Err("expected octal permission bits such as 0644".into());
    }
    if let Some(bad) = digits.chars().find(|c| !('0'..='7').contains(c)) {
        return Err(format!("`{bad}` is not an octal digit; expected octal permission bits such as 0644"));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= MODE_MAX => Ok(Mode(mode as u16)),
        _ => Err("more than 0o7777; expected octal permission bits such as 0644".into()),
    }
}

/// Parses a duration in Go's syntax, as goofys takes it: a sequence of decimal numbers with a
/// unit each (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), such as `1m`, `1.5s`, `1h30m`; a bare `0`
/// is zero. Negative durations are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const HINT: &str = "expected a duration such as 30s, 1m, 1h30m, 500ms or 0";
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(format!("empty; {HINT}"));
    }
    if text.starts_with('-') {
        return Err(format!("negative; {HINT}"));
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let value: f64 = match number.parse() {
            Ok(value) if !number.is_empty() => value,
            _ => return Err(format!("`{text}` has no number where one is needed; {HINT}")),
        };
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after_unit) = after.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("`{text}` lacks a unit; {HINT}")),
            other => return Err(format!("`{other}` is not a unit; {HINT}")),
        };
        total_nanos += value * nanos_per_unit;
        rest = after_unit;
    }
    // Ten years is far beyond any sensible TTL or timeout; it keeps the conversion exact.
    if total_nanos > 10.0 * 365.0 * 24.0 * 3600e9 {
        return Err(format!("`{text}` is longer than ten years; {HINT}"));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

/// The canned ACLs S3 knows.
pub const CANNED_ACLS: [&str; 8] = [
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];

/// A storage class is an S3 enum value such as `STANDARD_IA`; S3-compatible stores add their
/// own, so only the form is checked here and the server judges the name.
fn parse_storage_class(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
        Ok(text.to_owned())
    } else {
        Err("expected an S3 storage class such as STANDARD, STANDARD_IA, ONEZONE_IA or INTELLIGENT_TIERING".into())
    }
}

/// A secret given on the command line: its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretArg(pub String);

impl fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretArg(** redacted **)")
    }
}

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(SecretArg(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount_args(argv: &[&str]) -> MountArgs {
        let argv = std::iter::once("goofys-rs").chain(argv.iter().copied()).map(OsString::from);
        match try_parse_args(argv).unwrap() {
            Invocation::Mount(args) => *args,
            other => panic!("{other:?}"),
        }
    }

    fn parse_error(argv: &[&str]) -> String {
        let argv = std::iter::once("goofys-rs").chain(argv.iter().copied()).map(OsString::from);
        try_parse_args(argv).unwrap_err().to_string()
    }

    #[test]
    fn durations_follow_go_syntax() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
        for bad in ["", "1", "60", "1x", "m", "-1s", "soon", "1m30", ".s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn modes_are_octal_and_at_most_07777() {
        assert_eq!(parse_mode("0644"), Ok(Mode(0o644)));
        assert_eq!(parse_mode("644"), Ok(Mode(0o644)));
        assert_eq!(parse_mode("0o1777"), Ok(Mode(0o1777)));
        assert!(parse_mode("999").unwrap_err().contains("`9` is not an octal digit"));
        assert!(parse_mode("17777").is_err());
        assert!(parse_mode("").is_err());
    }

    #[test]
    fn goofys_defaults_hold_when_no_flag_is_given() {
        let args = mount_args(&["bucket", "/mnt"]);
        assert_eq!(args.bucket, Some(BucketSpec { bucket: "bucket".into(), prefix: String::new() }));
        assert_eq!(args.mountpoint, Some(PathBuf::from("/mnt")));
        assert_eq!(args.dir_mode, Mode(0o755));
        assert_eq!(args.file_mode, Mode(0o644));
        assert_eq!(args.stat_cache_ttl, Duration::from_secs(60));
        assert_eq!(args.type_cache_ttl, Duration::from_secs(60));
        assert_eq!(args.http_timeout, Duration::from_secs(30));
        assert!(!args.foreground && !args.read_only && !args.allow_other && !args.subdomain);
        assert_eq!((args.uid, args.gid, args.region, args.endpoint), (None, None, None, None));
    }

    #[test]
    fn every_goofys_flag_parses() {
        let args = mount_args(&[
            "-o",
            "allow_other",
            "--dir-mode",
            "0700",
            "--file-mode=0600",
            "--uid",
            "1000",
            "--gid",
            "100",
            "--endpoint",
            "http://127.0.0.1:9000",
            "--profile",
            "dev",
            "--use-content-type",
            "--subdomain",
            "--region",
            "eu-west-1",
            "--requester-pays",
            "--storage-class",
            "STANDARD_IA",
            "--sse-kms",
            "",
            "--acl",
            "bucket-owner-full-control",
            "--cheap",
            "--no-implicit-dir",
            "--stat-cache-ttl",
            "1s",
            "--type-cache-ttl",
            "0",
            "--http-timeout",
            "1m",
            "--debug_fuse",
            "--debug_s3",
            "-f",
            "bucket:logs/2024",
            "/mnt/s3",
        ]);
        assert_eq!(args.bucket.unwrap().to_string(), "bucket:logs/2024");
        assert_eq!(args.options, ["allow_other"]);
        assert_eq!((args.dir_mode, args.file_mode), (Mode(0o700), Mode(0o600)));
        assert_eq!((args.uid, args.gid), (Some(1000), Some(100)));
        assert_eq!(args.sse_kms.as_deref(), Some(""));
        assert_eq!(args.acl.as_deref(), Some("bucket-owner-full-control"));
        assert_eq!(args.type_cache_ttl, Duration::ZERO);
        assert!(args.cheap && args.no_implicit_dir && args.debug_fuse && args.debug_s3 && args.foreground);
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert!(parse_error(&["--file-mode", "999", "b", "/mnt"]).contains("--file-mode"));
        assert!(parse_error(&["--stat-cache-ttl", "soon", "b", "/mnt"]).contains("--stat-cache-ttl"));
        assert!(parse_error(&["--acl", "everyone", "b", "/mnt"]).contains("--acl"));
        assert!(parse_error(&["--storage-class", "cheap", "b", "/mnt"]).contains("--storage-class"));
        assert!(parse_error(&[":prefix", "/mnt"]).contains("bucket name is empty"));
        assert!(parse_error(&["b"]).contains("MOUNTPOINT"));
        assert!(parse_error(&["--sse-c", "k", "--sse", "b", "/mnt"]).contains("cannot be used with"));
    }

    #[test]
    fn demo_is_a_command_and_a_bucket_named_demo_is_demo_colon() {
        let argv = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            try_parse_args(argv(&["goofys-rs", "demo"])).unwrap(),
            Invocation::Demo(DemoArgs { mountpoint: None })
        );
        assert_eq!(
            try_parse_args(argv(&["goofys-rs", "demo", "/tmp/x"])).unwrap(),
            Invocation::Demo(DemoArgs { mountpoint: Some("/tmp/x".into()) })
        );
        let Invocation::Mount(args) = try_parse_args(argv(&["goofys-rs", "demo:", "/mnt"])).unwrap() else {
            panic!("demo: must mount the bucket `demo`")
        };
        assert_eq!(args.bucket.unwrap().bucket, "demo");
    }

    #[test]
    fn an_sse_c_key_never_shows_in_debug_output() {
        let args = mount_args(&["--sse-c", "c2VjcmV0LWtleS1zZWNyZXQta2V5LXNlY3JldC1rZXkh", "b", "/mnt"]);
        assert!(!format!("{args:?}").contains("c2VjcmV0"));
    }
}
