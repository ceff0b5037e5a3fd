//! The workload through a mounted client: the steps of goofys' benchmark and mountpoint-s3's
//! fio jobs, with the page cache dropped (and the client remounted, so its own caches are cold
//! too) before every cold step.
//!
//! A step that fails is noted and the others go on: peers differ by design (rclone without a
//! write cache refuses some writes), and one refusal must not hide the rest of the row.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;

use goofys_s3::S3Client;

use crate::clients::{ClientKind, MountContext, MountedClient};
use crate::layout::{Layout, SMALL_BODY, fill_object_bytes};
use crate::measure::{Measurements, Step};
use crate::metrics_probe::MetricsProbe;
use crate::raw;

/// Reads and writes are issued in pieces of this size (as `dd bs=1M`).
const IO_BYTES: usize = 1 << 20;
/// Threads of the "in parallel" create step.
const PARALLEL_CREATORS: usize = 32;
/// The file the readers-and-writer step writes, in the work directory.
pub const MIXED_WRITE_NAME: &str = "mixed-write";
/// Samples of time to first byte per run; the run's figure is their median.
const FIRST_BYTE_SAMPLES: u64 = 5;

/// Where the time-to-first-byte samples read, spread over a file of `size` bytes (the same
/// for the raw client, so both pay the server's cold disk alike).
pub fn first_byte_offsets(size: u64) -> impl Iterator<Item = u64> {
    (1..=FIRST_BYTE_SAMPLES).map(move |sample| (size / (FIRST_BYTE_SAMPLES + 1) * sample) & !4095)
}

/// What one run of one mounted client produced.
#[derive(Debug, Default)]
pub struct RunOutcome {
    pub measurements: Measurements,
    pub peak_rss_kib: u64,
    pub notes: Vec<String>,
    /// S3 requests per step, from the client's own metrics (goofys-rs only).
    pub requests: BTreeMap<Step, BTreeMap<String, f64>>,
}

/// Asks S3 directly whether what a client wrote is there: a step that writes ends only when
/// S3 holds the result, whether the client uploads before `close` returns or after (rclone
/// with a write cache uploads in the background).
#[derive(Debug)]
pub struct StoredCheck {
    pub client: Arc<S3Client>,
    pub runtime: tokio::runtime::Handle,
}

/// How long a client may take to finish uploading after its last `close`.
const STORED_TIMEOUT: Duration = Duration::from_secs(300);

impl StoredCheck {
    /// Waits until the files (keys but directory markers) under `prefix` number `count` (and,
    /// with `size_bytes`, the first has that size).
    fn wait_for(&self, prefix: &str, count: usize, size_bytes: Option<u64>) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let mut stored = self.runtime.block_on(raw::list_objects(&self.client, prefix))?;
            // Directory markers (`dir/`) are the client's business, not the files counted.
            stored.retain(|(key, _)| !key.ends_with('/'));
            let sized = size_bytes.is_none_or(|size| stored.first().is_some_and(|&(_, len)| len == size));
            if stored.len() == count && sized {
                return Ok(());
            }
            if started.elapsed() > STORED_TIMEOUT {
                bail!("S3 holds {} objects under {prefix} after {STORED_TIMEOUT:?}, not {count}", stored.len());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A client that can be remounted between steps.
struct Session<'a> {
    kind: ClientKind,
    context: &'a MountContext,
    mountpoint: PathBuf,
    mounted: Option<MountedClient>,
    peak_rss_kib: u64,
    /// Mounts so far: a step that remounts starts the client's counters from zero.
    mounts: u32,
}

impl Session<'_> {
    fn path(&self, relative: &str) -> PathBuf {
        self.mountpoint.join(relative)
    }

    fn mount(&mut self) -> anyhow::Result<()> {
        if self.mounted.is_none() {
            self.mounted = Some(self.context.mount(self.kind, &self.mountpoint)?);
            self.mounts += 1;
        }
        Ok(())
    }

    fn unmount(&mut self) -> anyhow::Result<()> {
        if let Some(mounted) = self.mounted.take() {
            self.peak_rss_kib = self.peak_rss_kib.max(mounted.peak_rss_kib().unwrap_or(0));
            mounted.unmount()?;
        }
        Ok(())
    }

    /// A fresh mount with an empty page cache.
    fn cold(&mut self) -> anyhow::Result<()> {
        self.unmount()?;
        drop_caches();
        self.mount()
    }
}

/// Empties the kernel's page, dentry and inode caches (needs root; without it the cold steps
/// are warm, which the report says).
pub fn drop_caches() -> bool {
    let _ = Command::new("sync").status();
    fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// What is the same for every client and run.
#[derive(Debug)]
pub struct RunPlan {
    pub layout: Layout,
    /// Duration of each random-read job.
    pub random_read_duration: Duration,
    /// What the sequential write step writes.
    pub write_data: Bytes,
}

/// Runs the workload through `kind` (run number `run`).
pub fn run_mounted(
    kind: ClientKind,
    context: &MountContext,
    plan: &RunPlan,
    run: u32,
    metrics: Option<&MetricsProbe>,
    stored: Option<&StoredCheck>,
) -> RunOutcome {
    let RunPlan { ref layout, random_read_duration, ref write_data } = *plan;
    let mountpoint = context.scratch.join("mnt").join(kind.name());
    let mut session = Session { kind, context, mountpoint, mounted: None, peak_rss_kib: 0, mounts: 0 };
    let mut outcome = RunOutcome::default();
    let work_dir = layout.work_dir(kind.name(), run);
    let verify = run == 1 && kind != ClientKind::NullFuse;

    for step in Step::ALL {
        if let Err(error) = session.mount() {
            outcome.notes.push(format!("{}: mounting before {}: {error:#}", kind.name(), step.label()));
            continue;
        }
        // Counters read before the step; a step that remounts (cold) counts from zero.
        let (before, mounts_before) = (metrics.and_then(|probe| probe.requests().ok()), session.mounts);
        let context = StepContext { layout, work_dir: &work_dir, random_read_duration, write_data, verify, stored };
        let result = run_step(step, &mut session, &context, &mut outcome);
        if let Err(error) = result {
            let note = format!("{}: {} failed: {error:#}", kind.name(), step.label());
            eprintln!("{note}");
            outcome.notes.push(note);
            // A failed step may leave the mount in any state: start the next one afresh.
            if let Err(error) = session.unmount() {
                outcome.notes.push(format!("{}: unmount after a failure: {error:#}", kind.name()));
            }
            continue;
        }
        if let (Some(probe), Some(before)) = (metrics, before)
            && let Ok(after) = probe.requests()
        {
            let before = if session.mounts == mounts_before { before } else { BTreeMap::new() };
            outcome.requests.insert(step, MetricsProbe::delta(&before, &after));
        }
    }
    if let Err(error) = session.unmount() {
        outcome.notes.push(format!("{}: final unmount: {error:#}", kind.name()));
    }
    outcome.peak_rss_kib = session.peak_rss_kib;
    outcome
}

/// What every step of a run needs.
struct StepContext<'a> {
    layout: &'a Layout,
    work_dir: &'a str,
    random_read_duration: Duration,
    write_data: &'a Bytes,
    /// Check the bytes read against the generator's (first run only).
    verify: bool,
    stored: Option<&'a StoredCheck>,
}

fn run_step(
    step: Step,
    session: &mut Session<'_>,
    context: &StepContext<'_>,
    outcome: &mut RunOutcome,
) -> anyhow::Result<()> {
    let StepContext { layout, work_dir, random_read_duration, write_data, verify, stored } = *context;
    let wait_stored = |prefix: String, count: usize, size_bytes: Option<u64>| match stored {
        Some(check) => check.wait_for(&prefix, count, size_bytes),
        None => Ok(()),
    };
    let measurements = &mut outcome.measurements;
    let big_key = layout.big_key(1);
    let size = layout.big_file_bytes;
    match step {
        Step::SeqWrite => {
            fs::create_dir_all(session.path(work_dir))?;
            let target = session.path(&format!("{work_dir}/big"));
            let started = Instant::now();
            write_file(&target, write_data)?;
            wait_stored(format!("{work_dir}/big"), 1, Some(write_data.len() as u64))?;
            measurements.throughput(step, write_data.len() as u64, started.elapsed());
        }
        Step::SeqRead => {
            session.cold()?;
            let path = session.path(&big_key);
            let started = Instant::now();
            let read = read_file(&path)?;
            measurements.throughput(step, read, started.elapsed());
            if read != size {
                bail!("read {read} bytes of {size}");
            }
            if verify {
                verify_file(&path, &big_key)?;
            }
        }
        Step::FirstByte => {
            let path = session.path(&big_key);
            fs::metadata(&path)?;
            let mut samples = Vec::new();
            for offset in first_byte_offsets(size) {
                drop_caches();
                let started = Instant::now();
                let file = File::open(&path)?;
                let mut byte = [0u8; 1];
                file.read_exact_at(&mut byte, offset)?;
                samples.push(started.elapsed().as_secs_f64());
            }
            let median = crate::measure::summarize(&samples).expect("samples taken").median;
            measurements.seconds(step, Duration::from_secs_f64(median));
        }
        Step::RandRead4k | Step::RandRead1m => {
            session.cold()?;
            let block = if step == Step::RandRead4k { "4k" } else { "1m" };
            let (ios, bytes, seconds) = fio_random_read(&session.path(&big_key), block, random_read_duration)?;
            let block_bytes = if step == Step::RandRead4k { 4096 } else { 1 << 20 };
            measurements.random_reads(step, ios, block_bytes, Duration::from_secs_f64(seconds));
            debug_assert!(bytes >= ios);
        }
        Step::ParallelRead => {
            session.cold()?;
            let paths: Vec<PathBuf> = layout.big_keys().iter().map(|key| session.path(key)).collect();
            let started = Instant::now();
            let total = std::thread::scope(|scope| {
                let readers: Vec<_> = paths.iter().map(|path| scope.spawn(move || read_file(path))).collect();
                readers.into_iter().map(|reader| reader.join().expect("reader thread")).sum::<anyhow::Result<u64>>()
            })?;
            measurements.throughput(step, total, started.elapsed());
        }
        Step::ReadersAndWriter => {
            // The memory target's load: every large file read at once while a new one is
            // written; the figure is the bytes read and written over the time to finish both.
            session.cold()?;
            let paths: Vec<PathBuf> = layout.big_keys().iter().map(|key| session.path(key)).collect();
            // (The null filesystem forgets the work directory when it is remounted.)
            fs::create_dir_all(session.path(work_dir))?;
            let target = session.path(&format!("{work_dir}/{MIXED_WRITE_NAME}"));
            let started = Instant::now();
            let total = std::thread::scope(|scope| {
                let writer = scope.spawn(|| write_file(&target, write_data).map(|()| write_data.len() as u64));
                let readers: Vec<_> = paths.iter().map(|path| scope.spawn(move || read_file(path))).collect();
                let read = readers
                    .into_iter()
                    .map(|reader| reader.join().expect("reader thread"))
                    .sum::<anyhow::Result<u64>>();
                Ok::<_, anyhow::Error>(read? + writer.join().expect("writer thread")?)
            })?;
            wait_stored(format!("{work_dir}/{MIXED_WRITE_NAME}"), 1, Some(write_data.len() as u64))?;
            measurements.throughput(step, total, started.elapsed());
        }
        Step::CreateSerial | Step::CreateParallel => {
            let relative_dir = format!("{work_dir}/{}", if step == Step::CreateSerial { "serial" } else { "parallel" });
            let dir = session.path(&relative_dir);
            fs::create_dir_all(&dir)?;
            let names: Vec<PathBuf> = (0..layout.small_files).map(|index| dir.join(format!("f{index}"))).collect();
            let started = Instant::now();
            if step == Step::CreateSerial {
                for (index, name) in names.iter().enumerate() {
                    write_file(name, format!("{index}\n").as_bytes())?;
                }
            } else {
                let chunk = names.len().div_ceil(PARALLEL_CREATORS).max(1);
                std::thread::scope(|scope| {
                    let creators: Vec<_> = names
                        .chunks(chunk)
                        .map(|group| {
                            scope.spawn(move || group.iter().try_for_each(|name| write_file(name, b"parallel\n")))
                        })
                        .collect();
                    creators.into_iter().try_for_each(|creator| creator.join().expect("creator thread"))
                })?;
            }
            wait_stored(format!("{relative_dir}/"), names.len(), None)?;
            measurements.seconds(step, started.elapsed());
        }
        Step::Ls | Step::LsLong => {
            session.cold()?;
            let dir = session.path(layout.ls_dir());
            let args: &[&str] = if step == Step::Ls { &[] } else { &["-l"] };
            let started = Instant::now();
            let output = run_tool("ls", args, &dir)?;
            measurements.seconds(step, started.elapsed());
            let lines = output.lines().filter(|line| !line.starts_with("total")).count();
            if lines != layout.small_files as usize {
                bail!("ls listed {lines} entries, not {}", layout.small_files);
            }
        }
        Step::Find => {
            session.cold()?;
            let started = Instant::now();
            let output = run_tool("find", &[], &session.path(layout.tree_dir()))?;
            measurements.seconds(step, started.elapsed());
            let lines = output.lines().count() as u64;
            if lines != layout.tree_entries() {
                bail!("find printed {lines} lines, not {}", layout.tree_entries());
            }
        }
        Step::CatSmall => {
            session.cold()?;
            let dir = session.path(layout.ls_dir());
            let started = Instant::now();
            let output =
                Command::new("sh").arg("-c").arg("cat \"$1\"/*").arg("sh").arg(&dir).stderr(Stdio::piped()).output()?;
            measurements.seconds(step, started.elapsed());
            let expected = SMALL_BODY.len() * layout.small_files as usize;
            if !output.status.success() || output.stdout.len() != expected {
                bail!(
                    "cat gave {} bytes (expected {expected}): {}",
                    output.stdout.len(),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
        }
        Step::RmRf => {
            let started = Instant::now();
            run_tool("rm", &["-rf"], &session.path(work_dir))?;
            wait_stored(format!("{work_dir}/"), 0, None)?;
            measurements.seconds(step, started.elapsed());
        }
    }
    Ok(())
}

/// Writes `data` to a new file in pieces of [`IO_BYTES`] and closes it, checking close's
/// result (where the S3 clients report a failed upload).
fn write_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
    for piece in data.chunks(IO_BYTES) {
        file.write_all(piece).with_context(|| format!("writing {}", path.display()))?;
    }
    nix::unistd::close(file).with_context(|| format!("closing {}", path.display()))?;
    Ok(())
}

/// Reads a whole file in pieces of [`IO_BYTES`]; returns its length.
fn read_file(path: &Path) -> anyhow::Result<u64> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buffer = vec![0u8; IO_BYTES];
    let mut total = 0;
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(total),
            read => total += read as u64,
        }
    }
}

/// Checks the file's bytes against the generator's (untimed).
fn verify_file(path: &Path, key: &str) -> anyhow::Result<()> {
    let mut file = File::open(path)?;
    let mut got = vec![0u8; IO_BYTES];
    let mut expected = vec![0u8; IO_BYTES];
    let mut offset = 0u64;
    loop {
        let read = read_full(&mut file, &mut got)?;
        if read == 0 {
            return Ok(());
        }
        fill_object_bytes(key, offset, &mut expected[..read]);
        if got[..read] != expected[..read] {
            bail!("{} differs from what was uploaded near offset {offset}", path.display());
        }
        offset += read as u64;
    }
}

fn read_full(file: &mut File, buffer: &mut [u8]) -> anyhow::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

/// Runs `tool args... path` and returns its stdout.
fn run_tool(tool: &str, args: &[&str], path: &Path) -> anyhow::Result<String> {
    let output = Command::new(tool).args(args).arg(path).stderr(Stdio::piped()).output()?;
    if !output.status.success() {
        bail!("{tool} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// fio random reads of `block` for `duration`; returns (reads, bytes, seconds).
fn fio_random_read(path: &Path, block: &str, duration: Duration) -> anyhow::Result<(u64, u64, f64)> {
    let output = Command::new("fio")
        .arg("--name=randread")
        .arg(format!("--filename={}", path.display()))
        .args(["--readonly", "--rw=randread", "--ioengine=psync", "--time_based", "--output-format=json"])
        .arg(format!("--bs={block}"))
        .arg(format!("--runtime={}", duration.as_secs().max(1)))
        .stderr(Stdio::piped())
        .output()
        .context("running fio (apt-get install fio)")?;
    if !output.status.success() {
        bail!("fio failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    parse_fio(&String::from_utf8_lossy(&output.stdout))
}

fn parse_fio(json: &str) -> anyhow::Result<(u64, u64, f64)> {
    // fio may print warnings before the JSON document.
    let start = json.find('{').context("fio printed no JSON")?;
    let value: serde_json::Value = serde_json::from_str(&json[start..])?;
    let read = &value["jobs"][0]["read"];
    let ios = read["total_ios"].as_u64().context("fio JSON without read.total_ios")?;
    let bytes = read["io_bytes"].as_u64().context("fio JSON without read.io_bytes")?;
    let runtime_ms = read["runtime"].as_u64().context("fio JSON without read.runtime")?;
    Ok((ios, bytes, runtime_ms as f64 / 1e3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_json_after_warnings_is_parsed() {
        let json = "note: both iodepth >= 1 and synchronous I/O engine are selected\n\
                    {\"jobs\":[{\"read\":{\"total_ios\":1500,\"io_bytes\":6144000,\"runtime\":15000}}]}";
        assert_eq!(parse_fio(json).unwrap(), (1500, 6_144_000, 15.0));
        assert!(parse_fio("no json").is_err());
    }
}
