//! The S3 server the benchmark runs against, on 127.0.0.1 with a fresh data directory:
//! SeaweedFS (`weed mini`, the default, started by the tests' harness) or Garage (`--server
//! garage`, the stricter one: `cargo install garage`).

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_credential_types::Credentials;
use goofys_s3::{CredentialSource, S3Client, TransportConfig};
use goofys_tests::seaweedfs::{self, SeaweedFs};

use crate::clients::{find_on_path, first_line_of};

/// What clients need to reach the bucket.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
}

impl ServerInfo {
    pub fn transport_config(&self) -> TransportConfig {
        TransportConfig {
            bucket: self.bucket.clone(),
            endpoint: Some(self.endpoint.clone()),
            region: Some(self.region.clone()),
            credentials: CredentialSource::Static(Credentials::new(
                self.access_key.clone(),
                self.secret_key.clone(),
                None,
                None,
                "bench",
            )),
            ..TransportConfig::default()
        }
    }

    pub async fn client(&self) -> anyhow::Result<Arc<S3Client>> {
        Ok(Arc::new(S3Client::new(self.transport_config()).await?))
    }
}

/// Which server to start.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum ServerKind {
    Seaweedfs,
    Garage,
}

/// A running server; stopped when dropped.
#[derive(Debug)]
pub enum RunningServer {
    Seaweedfs(SeaweedFs),
    Garage(Garage),
}

impl RunningServer {
    /// Starts the server and creates `bucket` on it.
    pub async fn start(kind: ServerKind, bucket: &str) -> anyhow::Result<(RunningServer, ServerInfo)> {
        let (server, info) = match kind {
            ServerKind::Seaweedfs => {
                let weed = SeaweedFs::start();
                let version = find_on_path("weed")
                    .map(|weed| first_line_of(&weed, &["version"]))
                    .unwrap_or_else(|| "weed (version unknown)".into());
                let info = ServerInfo {
                    name: "SeaweedFS".into(),
                    version,
                    endpoint: weed.endpoint().to_owned(),
                    region: "us-east-1".into(),
                    bucket: bucket.into(),
                    access_key: seaweedfs::ACCESS_KEY.into(),
                    secret_key: seaweedfs::SECRET_KEY.into(),
                };
                (RunningServer::Seaweedfs(weed), info)
            }
            ServerKind::Garage => {
                let garage = Garage::start()?;
                let info = garage.info(bucket);
                (RunningServer::Garage(garage), info)
            }
        };
        let client = info.client().await?;
        let started = Instant::now();
        loop {
            match client.create_bucket().await {
                Ok(()) => break,
                Err(error) if started.elapsed() < Duration::from_secs(60) => {
                    eprintln!("setup: bucket not created yet ({error}); retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => bail!("cannot create bucket {bucket}: {error}"),
            }
        }
        Ok((server, info))
    }

    /// The server's data directory, for the note on disk use.
    pub fn data_dir(&self) -> PathBuf {
        match self {
            RunningServer::Seaweedfs(weed) => weed.data_dir().to_owned(),
            RunningServer::Garage(garage) => garage.dir.path().to_owned(),
        }
    }
}

/// A single-node Garage with its own key.
#[derive(Debug)]
pub struct Garage {
    child: Child,
    dir: tempfile::TempDir,
    s3_port: u16,
    key_id: String,
    secret: String,
    version: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn hex(bytes: usize) -> String {
    let mut random = vec![0u8; bytes];
    crate::layout::fill_object_bytes(&format!("{:?}", Instant::now()), 0, &mut random);
    random.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl Garage {
    fn start() -> anyhow::Result<Garage> {
        let garage = find_on_path("garage")
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin/garage")))
            .filter(|path| path.is_file())
            .context(
                "Garage is not installed: cargo install garage --version 2.5.0 --no-default-features --features bundled-libs,lmdb",
            )?;
        let dir = tempfile::Builder::new().prefix("goofys-bench-garage-").tempdir()?;
        let (s3_port, rpc_port, admin_port) = (free_port()?, free_port()?, free_port()?);
        let config = dir.path().join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{root}/meta\"\ndata_dir = \"{root}/data\"\ndb_engine = \"lmdb\"\nreplication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\nrpc_public_addr = \"127.0.0.1:{rpc_port}\"\nrpc_secret = \"{secret}\"\n\
                 [s3_api]\ns3_region = \"us-east-1\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\nroot_domain = \".s3.garage.localhost\"\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin_port}\"\n",
                root = dir.path().display(),
                secret = hex(32),
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("garage.log"))?;
        let child = Command::new(&garage)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let cli = |args: &[&str]| -> anyhow::Result<String> {
            let output = Command::new(&garage).arg("-c").arg(&config).args(args).output()?;
            if !output.status.success() {
                bail!("garage {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
            }
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", s3_port)).is_err() || cli(&["status"]).is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("garage did not start; see {}", dir.path().join("garage.log").display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let node = cli(&["node", "id", "-q"])?;
        let node = node.split('@').next().unwrap_or_default().to_owned();
        cli(&["layout", "assign", "-z", "dc1", "-c", "100G", &node])?;
        cli(&["layout", "apply", "--version", "1"])?;
        let key_id = format!("GK{}", hex(12));
        let secret = hex(32);
        cli(&["key", "import", "--yes", &key_id, &secret, "-n", "bench"])?;
        cli(&["key", "allow", "--create-bucket", "bench"])?;
        let version = first_line_of(&garage, &["--version"]);
        Ok(Garage { child, dir, s3_port, key_id, secret, version })
    }

    fn info(&self, bucket: &str) -> ServerInfo {
        ServerInfo {
            name: "Garage".into(),
            version: self.version.clone(),
            endpoint: format!("http://127.0.0.1:{}", self.s3_port),
            region: "us-east-1".into(),
            bucket: bucket.into(),
            access_key: self.key_id.clone(),
            secret_key: self.secret.clone(),
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
