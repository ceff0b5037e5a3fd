//! `goofys-rs demo`: the real mount, against an S3 server that runs inside this process.
//!
//! Problems this module solves:
//! - A new user should see goofys-rs work before setting up a bucket and credentials. The
//!   simulator's S3 model, served over real HTTP with SigV4 (`goofys_sim::server`, on s3s), is
//!   a bucket that needs nothing installed but FUSE; the mount in front of it is the production
//!   one (core, driver, transport), not a mock.
//! - The server listens on 127.0.0.1 only, on a random port, with random keys, so nobody else
//!   on the machine can use it while it runs.
//! - Ctrl-C (or SIGTERM) unmounts, stops the server and removes what the demo created (the
//!   temporary mountpoint), leaving nothing behind.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use aws_credential_types::Credentials;
use bytes::Bytes;
use goofys_core::{Core, CoreConfig};
use goofys_s3::{CredentialSource, S3Client, TransportConfig};
use goofys_sim::s3_model::S3Model;
use goofys_sim::server::ServerHandle;
use md5::{Digest as _, Md5};

use crate::checks::{FUSE_DEVICE, check_fuse_device, prepare_mountpoint};
use crate::cli::DemoArgs;
use crate::logging::LogDestination;
use crate::mount::MountOptions;
use crate::plan::{AccessRequest, HostFacts, LogSettings, decide_access};
use crate::run::{fail, seed, shutdown_signal, wall_clock_now, warn};

/// The demo bucket's name.
pub const DEMO_BUCKET: &str = "demo";

/// The sample file whose checksum the demo suggests checking.
pub const SAMPLE_BINARY_KEY: &str = "data/sample-4MiB.bin";
const SAMPLE_BINARY_BYTES: usize = 4 * 1024 * 1024;

/// The demo's log filter: its terminal is the user's, so only warnings (a write that could not
/// reach S3, a failed request), and the mount's own start and end.
const DEMO_LOG_DEFAULT: &[&str] = &["warn", "fuser=error", "goofys_fuse=info"];

/// The README at the root of the demo bucket.
pub const SAMPLE_README: &str = "\
Welcome to goofys-rs.

This directory is an S3 bucket named `demo`, mounted through FUSE. The bucket lives in
memory, in an S3 server inside the goofys-rs process (127.0.0.1, random port, SigV4), so
everything you do here travels as real S3 requests over HTTP.

Every object became a file; every `/` in a key became a directory:

  README.txt                          this file
  docs/                               two short documents
  photos/2024/, photos/2025/          directories nobody created: they exist because keys
                                      start with `photos/2024/` (implicit directories)
  notes/                              names with spaces, unicode and `%`
  data/sample-4MiB.bin                4 MiB of pseudo-random bytes; its MD5 is S3's ETag
  empty/                              an explicit directory marker object (`empty/`)

Reads are prefetched in parallel ranged GETs; attributes and names are cached for a
minute. Write too: `cp`, `mkdir`, `mv`, `rm`, appends and edits in place all become S3
requests; `close` returns once S3 holds the file.
";

/// The sample objects: key and body.
fn sample_objects() -> Vec<(&'static str, Bytes)> {
    let text = |s: &'static str| Bytes::from_static(s.as_bytes());
    vec![
        ("README.txt", text(SAMPLE_README)),
        (
            "docs/getting-started.md",
            text("# Getting started\n\nMount a bucket: `goofys-rs my-bucket /mnt/s3`.\nUnmount: `umount /mnt/s3`.\n"),
        ),
        (
            "docs/semantics.md",
            text(
                "# Semantics\n\nClose-to-open consistency, as goofys. A file replaced while open fails its reads with ESTALE.\n",
            ),
        ),
        ("photos/2024/holiday/beach.jpg", pseudo_random_bytes(1, 48 * 1024)),
        ("photos/2024/holiday/sunset.jpg", pseudo_random_bytes(2, 64 * 1024)),
        ("photos/2025/winter/snow.jpg", pseudo_random_bytes(3, 32 * 1024)),
        ("notes/café menu ☕.txt", text("espresso 1.80\ncappuccino 2.60\n")),
        ("notes/100% done.txt", text("Percent signs are fine in names.\n")),
        ("notes/meeting notes 2025-01-15.txt", text("Spaces are fine too.\n")),
        (SAMPLE_BINARY_KEY, pseudo_random_bytes(4, SAMPLE_BINARY_BYTES)),
        ("empty/", Bytes::new()),
    ]
}

/// Deterministic bytes that do not compress (xorshift64*).
fn pseudo_random_bytes(seed: u64, length_bytes: usize) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(length_bytes + 8);
    while out.len() < length_bytes {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(length_bytes);
    Bytes::from(out)
}

/// Sixteen random bytes from the kernel, in hex.
fn random_hex() -> std::io::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The mountpoint the demo uses, and whether the demo must remove it at the end.
enum DemoMountpoint {
    Temporary(tempfile::TempDir),
    Created(PathBuf),
    Given(PathBuf),
}

impl DemoMountpoint {
    fn choose(requested: Option<&Path>) -> Result<DemoMountpoint, String> {
        match requested {
            None => {
                tempfile::Builder::new().prefix("goofys-rs-demo-").tempdir().map(DemoMountpoint::Temporary).map_err(
                    |error| format!("cannot create a temporary mountpoint: {error}; give one: goofys-rs demo DIR"),
                )
            }
            Some(path) if path.exists() => Ok(DemoMountpoint::Given(path.to_owned())),
            Some(path) => std::fs::create_dir_all(path)
                .map(|()| DemoMountpoint::Created(path.to_owned()))
                .map_err(|error| format!("cannot create the mountpoint {}: {error}", path.display())),
        }
    }

    fn path(&self) -> &Path {
        match self {
            DemoMountpoint::Temporary(dir) => dir.path(),
            DemoMountpoint::Created(path) | DemoMountpoint::Given(path) => path,
        }
    }

    /// Removes what the demo created.
    fn clean_up(self) {
        match self {
            DemoMountpoint::Temporary(dir) => drop(dir.close()),
            DemoMountpoint::Created(path) => drop(std::fs::remove_dir(path)),
            DemoMountpoint::Given(_) => {}
        }
    }
}

/// Runs the demo until Ctrl-C.
pub fn run(args: DemoArgs) -> ExitCode {
    let host = HostFacts::detect();
    if let Err(error) = check_fuse_device(Path::new(FUSE_DEVICE)) {
        return fail(&error.0);
    }
    let access = match decide_access(&AccessRequest::default(), &host) {
        Ok(access) => access,
        Err(error) => return fail(&error.0),
    };
    if let Some(warning) = &access.warning {
        warn(warning.clone());
    }
    if let Err(message) = crate::logging::init(DEMO_LOG_DEFAULT, &LogSettings::default(), &LogDestination::Stderr) {
        return fail(&message);
    }
    let mountpoint = match DemoMountpoint::choose(args.mountpoint.as_deref()) {
        Ok(mountpoint) => mountpoint,
        Err(message) => return fail(&message),
    };
    let outcome = match prepare_mountpoint(mountpoint.path(), &mut warn) {
        Ok(canonical) => {
            let options = MountOptions {
                mountpoint: canonical,
                fs_name: "goofys-rs-demo".into(),
                allow_other: access.allow_other,
                allow_root: access.allow_root,
                auto_unmount: access.auto_unmount,
                ..MountOptions::default()
            };
            let core = CoreConfig { uid: host.uid, gid: host.gid, ..CoreConfig::default() };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|error| format!("cannot start the async runtime: {error}"))
                .and_then(|runtime| {
                    let outcome = runtime.block_on(serve_demo(options, core));
                    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
                    outcome
                })
        }
        Err(error) => Err(error.0),
    };
    mountpoint.clean_up();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

async fn serve_demo(options: MountOptions, core_config: CoreConfig) -> Result<(), String> {
    let now = wall_clock_now();
    let mut model = S3Model::new();
    let mut binary_etag = String::new();
    for (key, body) in sample_objects() {
        let etag = model.put_object(now, key, body);
        if key == SAMPLE_BINARY_KEY {
            binary_etag = etag.as_str().to_owned();
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|error| format!("cannot listen on 127.0.0.1: {error}"))?;
    let keys = random_hex().map_err(|error| format!("cannot read /dev/urandom: {error}"))?;
    let (access_key, secret_key) = (format!("DEMO{}", &keys[..16]), keys);
    let server = ServerHandle::spawn(listener, DEMO_BUCKET, &access_key, &secret_key, Arc::new(Mutex::new(model)))
        .map_err(|error| format!("cannot start the demo S3 server: {error:#}"))?;
    let endpoint = server.endpoint_url();

    let transport = TransportConfig {
        bucket: DEMO_BUCKET.into(),
        endpoint: Some(endpoint.clone()),
        credentials: CredentialSource::Static(Credentials::new(access_key, secret_key, None, None, "goofys-rs-demo")),
        ..TransportConfig::default()
    };
    let client = S3Client::new(transport)
        .await
        .map_err(|error| format!("cannot set up the S3 client: {:#}", anyhow::Error::new(error)))?;
    client.check_bucket("").await.map_err(|error| error.to_string())?;
    let stop = shutdown_signal().map_err(|error| format!("cannot listen for signals: {error}"))?;
    let core = Core::new(core_config, now, seed());
    let mounted = crate::mount::mount(core, Arc::new(client), &options).map_err(|error| format!("{error:#}"))?;
    print_instructions(&endpoint, mounted.mountpoint(), &binary_etag);

    let served = mounted.serve_until(stop).await.map_err(|error| format!("{error:#}"));
    let stopped = server.shutdown().await.map_err(|error| format!("stopping the demo S3 server: {error:#}"));
    served?;
    stopped?;
    println!("Unmounted {}; the demo bucket lived in memory and is gone.", options.mountpoint.display());
    Ok(())
}

fn print_instructions(endpoint: &str, mountpoint: &Path, binary_etag: &str) {
    let mnt = mountpoint.display().to_string();
    let quoted = |relative: &str| shell_quote(&format!("{mnt}/{relative}"));
    println!("goofys-rs demo: an in-memory S3 server at {endpoint} serves the bucket `{DEMO_BUCKET}`,");
    println!("mounted at {mnt}");
    println!();
    println!("Try, in another terminal:");
    println!("  ls -la {}", shell_quote(&mnt));
    println!("  cat {}", quoted("README.txt"));
    println!("  find {}", shell_quote(&mnt));
    println!("  du -sh {}", shell_quote(&mnt));
    println!("  stat {}", quoted("notes/café menu ☕.txt"));
    println!("  md5sum {}    # S3's ETag: {binary_etag}", quoted(SAMPLE_BINARY_KEY));
    println!();
    println!("  cp -r {} {}    # writes: mkdir, cp, mv, rm and edits in place work", quoted("docs"), quoted("my-docs"));
    println!();
    println!("Press Ctrl-C to unmount and stop.");
}

/// Quotes a path for a POSIX shell when it needs it.
fn shell_quote(text: &str) -> String {
    if text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c)) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The MD5 of the sample binary, as the demo's ETag shows it (for tests).
pub fn sample_binary_md5_hex() -> String {
    let body = pseudo_random_bytes(4, SAMPLE_BINARY_BYTES);
    Md5::digest(&body).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_keys_are_valid_and_the_binary_is_the_advertised_size() {
        let objects = sample_objects();
        for (key, _) in &objects {
            let placement = goofys_core::namespace::place_key("", key).unwrap();
            let components = placement.dirs.iter().copied().chain(placement.file);
            assert!(goofys_core::namespace::path_is_visible(components), "{key} would be hidden");
        }
        let binary = objects.iter().find(|(key, _)| *key == SAMPLE_BINARY_KEY).unwrap();
        assert_eq!(binary.1.len(), SAMPLE_BINARY_BYTES);
        assert_ne!(pseudo_random_bytes(1, 64), pseudo_random_bytes(2, 64));
    }

    #[test]
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(shell_quote("/tmp/goofys-rs-demo-x1/README.txt"), "/tmp/goofys-rs-demo-x1/README.txt");
        assert_eq!(shell_quote("/tmp/a b/it's"), r"'/tmp/a b/it'\''s'");
    }
}
