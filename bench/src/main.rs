//! goofys-bench: runs one workload through goofys-rs, its peers (s3fs, rclone mount, mount-s3),
//! a raw S3 client (the S3 ceiling) and a null FUSE filesystem (the FUSE ceiling), against a
//! local S3 server started for the run, and writes a Markdown table and an SVG chart.
//!
//! `bench/run.sh` is the one command (it installs what is missing and builds in release);
//! `goofys-bench run --help` lists the sizes that can be made smaller for a quick run.

mod clients;
mod layout;
mod measure;
mod metrics_probe;
mod nullfs;
mod raw;
mod report;
mod server;
mod workload;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::clients::{ClientKind, MountContext, Programs, first_line_of};
use crate::layout::Layout;
use crate::measure::{Measurements, Step};
use crate::metrics_probe::MetricsProbe;
use crate::report::{ClientResults, Report};
use crate::server::{RunningServer, ServerInfo, ServerKind};

#[derive(Parser, Debug)]
#[command(name = "goofys-bench", about = "goofys-rs beside its peers, a raw S3 client and a null FUSE filesystem")]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Run the benchmark and write the results.
    Run(RunArgs),
    /// (internal) The raw client's workload against a running server.
    #[command(hide = true)]
    RawWorkload(RawArgs),
    /// (internal) Serve the null filesystem on a mountpoint until unmounted.
    #[command(hide = true)]
    NullFuse(NullFuseArgs),
}

#[derive(Args, Debug, Clone)]
struct LayoutArgs {
    /// Size of each large file, in MiB (the issue's workload: 1024).
    #[arg(long, default_value_t = 1024)]
    big_file_mib: u64,
    /// Number of large files, one per parallel reader.
    #[arg(long, default_value_t = 4)]
    big_files: u32,
    /// Objects in the `ls` directory, small files created and `cat`.
    #[arg(long, default_value_t = 1000)]
    small_files: u32,
    /// Fan-out of the `find` tree (dirs × dirs × files).
    #[arg(long, default_value_t = 9)]
    tree_fanout: u32,
}

impl LayoutArgs {
    fn layout(&self) -> Layout {
        Layout {
            big_file_bytes: self.big_file_mib << 20,
            big_files: self.big_files,
            small_files: self.small_files,
            tree_fanout: self.tree_fanout,
        }
    }

    fn to_args(&self) -> Vec<String> {
        vec![
            format!("--big-file-mib={}", self.big_file_mib),
            format!("--big-files={}", self.big_files),
            format!("--small-files={}", self.small_files),
            format!("--tree-fanout={}", self.tree_fanout),
        ]
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The S3 server to start on 127.0.0.1.
    #[arg(long, value_enum, default_value = "seaweedfs")]
    server: ServerKind,
    /// Runs per client; each figure is the median of the runs.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Duration of each fio random-read job, in seconds.
    #[arg(long, default_value_t = 15)]
    fio_seconds: u64,
    /// Clients to run (comma-separated): goofys-rs, s3fs, rclone-off, rclone-writes, mount-s3,
    /// null-fuse, raw-s3. Default: all; those not installed are skipped with a note.
    #[arg(long, value_delimiter = ',')]
    clients: Vec<String>,
    /// The goofys-rs binary (default: next to this one).
    #[arg(long)]
    goofys_rs: Option<PathBuf>,
    /// goofys-rs' `--memory-limit`, in MiB: its peak RSS is checked against it (the memory
    /// target) with every large file read at once while one is written.
    #[arg(long, default_value_t = 512)]
    goofys_memory_limit_mib: u64,
    /// Where the table and chart go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    #[command(flatten)]
    layout: LayoutArgs,
}

#[derive(Args, Debug)]
struct RawArgs {
    #[arg(long)]
    endpoint: String,
    #[arg(long)]
    bucket: String,
    #[arg(long)]
    work_dir: String,
    #[arg(long)]
    fio_seconds: u64,
    #[command(flatten)]
    layout: LayoutArgs,
}

#[derive(Args, Debug)]
struct NullFuseArgs {
    mountpoint: PathBuf,
    #[command(flatten)]
    layout: LayoutArgs,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        BenchCommand::Run(args) => run(args),
        BenchCommand::RawWorkload(args) => raw_workload(args),
        BenchCommand::NullFuse(args) => Ok(nullfs::serve(&args.layout.layout(), &args.mountpoint)?),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// The raw client in its own process, so its peak RSS is its own: prints `result STEP VALUE`
/// lines and `peak_rss_kib N`.
fn raw_workload(args: RawArgs) -> anyhow::Result<()> {
    let info = ServerInfo {
        name: String::new(),
        version: String::new(),
        endpoint: args.endpoint,
        region: "us-east-1".into(),
        bucket: args.bucket,
        access_key: std::env::var("AWS_ACCESS_KEY_ID").context("AWS_ACCESS_KEY_ID")?,
        secret_key: std::env::var("AWS_SECRET_ACCESS_KEY").context("AWS_SECRET_ACCESS_KEY")?,
    };
    let layout = args.layout.layout();
    let mut measurements = Measurements::default();
    runtime()?.block_on(async {
        let client = info.client().await?;
        raw::run_workload(&client, &layout, &args.work_dir, Duration::from_secs(args.fio_seconds), &mut measurements)
            .await
    })?;
    for (step, value) in &measurements.values {
        println!("result {step:?} {value}");
    }
    println!("peak_rss_kib {}", clients::peak_rss_kib_of(std::process::id()).unwrap_or(0));
    Ok(())
}

fn run_raw_client(
    context: &MountContext,
    layout_args: &LayoutArgs,
    run: u32,
    fio_seconds: u64,
    results: &mut ClientResults,
) -> anyhow::Result<()> {
    let server = &context.server;
    let work_dir = Layout::default().work_dir(ClientKind::RawS3.name(), run);
    let output = Command::new(&context.programs.bench)
        .arg("raw-workload")
        .arg(format!("--endpoint={}", server.endpoint))
        .arg(format!("--bucket={}", server.bucket))
        .arg(format!("--work-dir={work_dir}"))
        .arg(format!("--fio-seconds={fio_seconds}"))
        .args(layout_args.to_args())
        .env("AWS_ACCESS_KEY_ID", &server.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &server.secret_key)
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        bail!("the raw client failed ({})", output.status);
    }
    let mut measurements = Measurements::default();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["result", step, value] => {
                if let Some(step) = Step::ALL.into_iter().find(|s| format!("{s:?}") == step) {
                    measurements.values.insert(step, value.parse()?);
                }
            }
            ["peak_rss_kib", kib] => results.peak_rss_kib = results.peak_rss_kib.max(kib.parse()?),
            _ => {}
        }
    }
    results.runs.push(measurements);
    Ok(())
}

fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name").and_then(|rest| rest.split_once(':')).map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0.0, |kib| kib as f64 / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, {memory_gib:.0} GiB RAM, Linux {}", kernel.trim())
}

/// The first three fields of /proc/loadavg.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(", ")
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let layout = args.layout.layout();
    let bench = std::env::current_exe()?;
    let goofys_rs = args.goofys_rs.clone().unwrap_or_else(|| bench.with_file_name("goofys-rs"));
    if !goofys_rs.is_file() {
        bail!("{} not found: build it with cargo build --release -p goofys-fuse", goofys_rs.display());
    }
    let programs = Programs { goofys_rs, bench };
    let mut report = Report::default();
    let load_at_start = load_average();
    let selected: Vec<ClientKind> = if args.clients.is_empty() {
        ClientKind::ALL.to_vec()
    } else {
        args.clients
            .iter()
            .map(|name| ClientKind::from_name(name).with_context(|| format!("unknown client `{name}`")))
            .collect::<anyhow::Result<_>>()?
    };
    let mut clients = Vec::new();
    for kind in selected {
        match programs.find(kind) {
            Ok(_) => clients.push(kind),
            Err(reason) => report.notes.push(format!("{} skipped: {reason}", kind.name())),
        }
    }
    if !workload::drop_caches() {
        report.notes.push("the page cache could not be dropped (not root?): cold steps were warm".into());
    }
    let fio = clients::find_on_path("fio");
    if fio.is_none() {
        report.notes.push("fio is not installed (apt-get install fio): random reads were skipped".into());
    }

    let runtime = runtime()?;
    let scratch = tempfile::Builder::new().prefix("goofys-bench-").tempdir()?;
    let (server, info) = runtime.block_on(RunningServer::start(args.server, "goofys-bench"))?;
    eprintln!("server: {} {} at {} (data in {})", info.name, info.version, info.endpoint, server.data_dir().display());
    runtime.block_on(async {
        let client = info.client().await?;
        raw::populate(&client, &layout).await
    })?;

    let metrics_address = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
    let goofys_help = help_of(&programs.goofys_rs);
    let metrics_supported = goofys_help.contains("--metrics-addr");
    let memory_limit_mib = goofys_help.contains("--memory-limit").then_some(args.goofys_memory_limit_mib);
    report.goofys_memory_limit_mib = memory_limit_mib;
    let context = MountContext {
        programs: programs.clone(),
        server: info.clone(),
        scratch: scratch.path().to_owned(),
        null_fuse_args: args.layout.to_args(),
        goofys_metrics_addr: metrics_supported.then(|| metrics_address.clone()),
        goofys_memory_limit_mib: memory_limit_mib,
    };
    let probe = metrics_supported.then_some(MetricsProbe { address: metrics_address });
    let plan = workload::RunPlan {
        layout,
        random_read_duration: Duration::from_secs(args.fio_seconds),
        write_data: raw::big_bytes("work/big", layout.big_file_bytes),
    };
    let stored = workload::StoredCheck { client: runtime.block_on(info.client())?, runtime: runtime.handle().clone() };

    for kind in &clients {
        report.clients.insert(*kind, ClientResults { version: programs.version(*kind), ..ClientResults::default() });
    }
    for run in 1..=args.runs {
        for &kind in &clients {
            eprintln!("run {run}/{}: {}", args.runs, kind.name());
            let results = report.clients.get_mut(&kind).expect("inserted above");
            if kind == ClientKind::RawS3 {
                if let Err(error) = run_raw_client(&context, &args.layout, run, args.fio_seconds, results) {
                    report.notes.push(format!("raw-s3 run {run}: {error:#}"));
                }
                continue;
            }
            let probe = if kind == ClientKind::GoofysRs { probe.as_ref() } else { None };
            let outcome = workload::run_mounted(
                kind,
                &context,
                &plan,
                run,
                probe,
                (kind != ClientKind::NullFuse).then_some(&stored),
            );
            results.runs.push(outcome.measurements);
            results.peak_rss_kib = results.peak_rss_kib.max(outcome.peak_rss_kib);
            if !outcome.requests.is_empty() {
                results.requests = outcome.requests;
            }
            for note in outcome.notes {
                if !report.notes.contains(&note) {
                    report.notes.push(format!("run {run}: {note}"));
                }
            }
        }
    }

    report.title = format!("goofys-rs beside its peers on {}", info.name);
    report.setting = vec![
        format!("machine: {}", machine_description()),
        format!("server: {} ({}) on 127.0.0.1, fresh data directory", info.name, info.version),
        format!(
            "workload: {} large files of {} MiB, {} small files, find over a {n}×{n}×{n} tree, fio {} s per random-read job, {} runs",
            layout.big_files,
            layout.big_file_bytes >> 20,
            layout.small_files,
            args.fio_seconds,
            args.runs,
            n = layout.tree_fanout
        ),
        format!("fio: {}", fio.map_or("not installed".into(), |fio| first_line_of(&fio, &["--version"]))),
        format!("date: {}", first_line_of(std::path::Path::new("date"), &["-u", "+%Y-%m-%d %H:%M UTC"])),
        "page cache dropped and every client remounted before each cold step; times include close (the object is complete in S3)".into(),
        format!(
            "load average (1, 5, 15 min) at start: {load_at_start}; at end: {} (the machine is shared: compare ratios within this run)",
            load_average()
        ),
    ];
    if let Some(limit_mib) = report.goofys_memory_limit_mib {
        report.setting.push(format!("goofys-rs options: --memory-limit {limit_mib}"));
    }
    drop(server);
    std::fs::create_dir_all(&args.out)?;
    let name = match args.server {
        ServerKind::Seaweedfs => "seaweedfs",
        ServerKind::Garage => "garage",
    };
    let markdown_path = args.out.join(format!("{name}.md"));
    std::fs::write(&markdown_path, report.markdown())?;
    std::fs::write(args.out.join(format!("{name}.svg")), report.svg())?;
    println!("{}", report.markdown());
    eprintln!("wrote {} and its chart", markdown_path.display());
    Ok(())
}

fn help_of(program: &std::path::Path) -> String {
    Command::new(program)
        .arg("--help")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_sizes_are_the_issues() {
        let cli = Cli::parse_from(["goofys-bench", "run"]);
        let BenchCommand::Run(args) = cli.command else { panic!("run") };
        assert_eq!(args.layout.layout(), Layout::default());
        assert_eq!((args.runs, args.fio_seconds), (3, 15));
        let _ = first_line_of;
    }
}
