//! The soak: several processes run mixed reads, writes, appends, renames, deletes and listings
//! on one mount for a given time, through a proxy that fails one request in ten in every way
//! it knows; then the mount is unmounted and the bucket checked against what each process
//! recorded (`goofys_tests::soak`). It reports operations done, requests and faults injected,
//! errors seen, wrong reads, bytes lost (must be 0) and the mount's peak memory.
//!
//! `soak_for_a_short_while` runs for 20 seconds in every test run. The real soak is ignored by
//! default; run it for an hour with:
//!
//! ```sh
//! GOOFYS_SOAK_SECONDS=3600 cargo test -p goofys-tests --test soak -- --ignored --nocapture
//! ```
//!
//! (`GOOFYS_SOAK_WORKERS`, default 4, and `GOOFYS_SOAK_SEED`, default 1, change the mix.)

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use goofys_core::CoreConfig;
use goofys_tests::bucket::{get, list_keys};
use goofys_tests::fault_proxy::{Fault, Network, ProxiedBucket, requests_failed};
use goofys_tests::mount::TestMount;
use goofys_tests::seaweedfs::SeaweedFs;
use goofys_tests::soak::{LedgerSummary, digest};

const WORKER: &str = env!("CARGO_BIN_EXE_soak-worker");
/// How often the server reclaims the space of overwritten objects during the soak.
const VACUUM_EVERY: Duration = Duration::from_secs(240);

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .map(|text| text.parse().unwrap_or_else(|_| panic!("{name}={text} is not a number")))
        .unwrap_or(default)
}

/// The process's peak resident memory (VmHWM), in MiB: the mount's, since the workers are
/// other processes.
fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    kib / 1024
}

async fn soak(run_for: Duration, workers: u64, seed: u64) {
    let network = Network::Faulty { seed };
    let server = SeaweedFs::shared();
    let bucket = ProxiedBucket::on(&server, "soak", network).await;
    let mount = TestMount::new(Arc::clone(&bucket.proxied), network.core_config(CoreConfig::default()));
    let ledgers = tempfile::tempdir().unwrap();
    let started = Instant::now();
    // SeaweedFS keeps overwritten and deleted objects until a vacuum: one every few minutes
    // keeps an hour's soak from filling the disk.
    let (vacuuming, stop_vacuum) = (Arc::clone(&server), Arc::new(AtomicBool::new(false)));
    let stopped = Arc::clone(&stop_vacuum);
    let vacuum = tokio::task::spawn_blocking(move || {
        let mut last = Instant::now();
        while !stopped.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            if last.elapsed() >= VACUUM_EVERY {
                if let Err(error) = vacuuming.reclaim_space() {
                    eprintln!("soak: the server's vacuum failed: {error}");
                }
                last = Instant::now();
            }
        }
    });

    let ledger_dir = ledgers.path().to_owned();
    let outputs = mount
        .use_files(move |root| {
            let children: Vec<_> = (0..workers)
                .map(|worker| {
                    let mut command = Command::new(WORKER);
                    command
                        .arg(root.join(format!("w{worker}")))
                        .arg((seed * 1000 + worker).to_string())
                        .arg(run_for.as_secs().to_string())
                        .arg(ledger_dir.join(format!("w{worker}")));
                    command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"))
                })
                .collect();
            children.into_iter().map(|child| child.wait_with_output().expect("a worker to finish")).collect::<Vec<_>>()
        })
        .await;
    for (worker, output) in outputs.iter().enumerate() {
        assert!(output.status.success(), "worker {worker} failed: {output:?}");
    }
    let worked = started.elapsed();
    stop_vacuum.store(true, Ordering::Relaxed);
    vacuum.await.expect("the vacuum task");
    // One more, before the bucket is checked: a vacuum must keep every live object.
    let vacuuming = Arc::clone(&server);
    tokio::task::spawn_blocking(move || vacuuming.reclaim_space()).await.unwrap().expect("a vacuum of the server");
    mount.unmount().await;
    let unmounted = started.elapsed();

    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let (mut bytes_lost, mut names_checked, mut problems) = (0u64, 0u64, Vec::new());
    for worker in 0..workers {
        let text = std::fs::read_to_string(ledgers.path().join(format!("w{worker}"))).expect("the worker's ledger");
        let ledger = LedgerSummary::parse(&text);
        for (name, count) in &ledger.counts {
            let total = counts.entry(name.clone()).or_insert(0);
            *total = if name == "slowest_call_ms" { (*total).max(*count) } else { *total + count };
        }
        problems.extend(ledger.problems.iter().map(|problem| format!("w{worker}: {problem}")));
        let prefix = format!("w{worker}/");
        let stored: BTreeMap<String, u64> = list_keys(&bucket.direct, &prefix).await.into_iter().collect();
        // The worker's directory marker (`w0/`) is the mount's own.
        for key in stored.keys().filter(|key| key.len() > prefix.len()) {
            let name = &key[prefix.len()..];
            assert!(ledger.names.contains_key(name), "{key} is in the bucket, but worker {worker} never made it");
        }
        for (name, states) in &ledger.names {
            let key = format!("{prefix}{name}");
            let held = get(&bucket.direct, &key).await;
            let state = held.as_deref().map(digest);
            names_checked += 1;
            if !states.contains(&state) {
                let size = held.map_or(0, |bytes| bytes.len() as u64);
                problems.push(format!("{key} holds {state:?} ({size} bytes), expected one of {states:?}"));
                bytes_lost += size.max(1);
            }
        }
    }
    let faults = bucket.proxy.faults_injected();
    let failed = requests_failed(&faults);
    eprintln!(
        "soak: {} s with {workers} workers (seed {seed}), unmounted after {} s\n\
         operations {}, errors seen {}, wrong reads {}, wrong listings {}, slowest call {} ms\n\
         requests {}, failed by the proxy {failed}, delayed {}: {faults:?}\n\
         names checked {names_checked}, bytes lost {bytes_lost}, mount's peak RSS {} MiB",
        worked.as_secs(),
        unmounted.as_secs(),
        counts.get("operations").copied().unwrap_or(0),
        counts.get("errors").copied().unwrap_or(0),
        counts.get("wrong_reads").copied().unwrap_or(0),
        counts.get("wrong_listings").copied().unwrap_or(0),
        counts.get("slowest_call_ms").copied().unwrap_or(0),
        bucket.proxy.exchanges().len(),
        faults.get(&Fault::Delay).copied().unwrap_or(0),
        peak_rss_mib(),
    );
    for problem in &problems {
        eprintln!("  {problem}");
    }
    bucket.finish().await;
    assert!(counts.get("operations").copied().unwrap_or(0) > 0, "the workers did nothing");
    assert_eq!(counts.get("wrong_reads").copied(), Some(0), "reads returned wrong bytes: {problems:#?}");
    assert_eq!(counts.get("wrong_listings").copied(), Some(0), "listings were wrong: {problems:#?}");
    assert_eq!(bytes_lost, 0, "acknowledged bytes are not in the bucket: {problems:#?}");
    assert!(failed > 0, "the proxy failed no request: the soak proved nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_for_a_short_while() {
    soak(Duration::from_secs(20), 3, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: GOOFYS_SOAK_SECONDS=3600 cargo test -p goofys-tests --test soak -- --ignored --nocapture"]
async fn soak_for_goofys_soak_seconds() {
    let run_for = Duration::from_secs(env_number("GOOFYS_SOAK_SECONDS", 600));
    soak(run_for, env_number("GOOFYS_SOAK_WORKERS", 4), env_number("GOOFYS_SOAK_SEED", 1)).await;
}
