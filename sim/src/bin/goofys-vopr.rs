//! `goofys-vopr`: runs simulator seeds and prints their trace hashes.
//!
//! `goofys-vopr --seed N [--ops M] [--faults swarm|flaky|throttled|chaos|none]` replays one
//! seed exactly; `--seeds A..B` runs a range; without a seed, one is picked from the time and
//! printed. Exit status 1 on the first failure, which prints the command that replays it.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use goofys_sim::vopr::{FaultPreset, preset_name, run_seed};

fn main() -> ExitCode {
    let mut seeds: Option<(u64, u64)> = None;
    let mut operations = 500;
    let mut preset = FaultPreset::Swarm;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{arg} needs a value")));
        match arg.as_str() {
            "--seed" => {
                let seed = parse(&value());
                seeds = Some((seed, seed + 1));
            }
            "--seeds" => {
                let range = value();
                let (start, end) = range.split_once("..").unwrap_or_else(|| usage("--seeds takes A..B"));
                seeds = Some((parse(start), parse(end)));
            }
            "--ops" => operations = parse(&value()) as usize,
            "--faults" => {
                let name = value();
                preset = FaultPreset::parse(&name).unwrap_or_else(|| usage(&format!("unknown fault preset {name}")));
            }
            "--help" | "-h" => usage(""),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let (start, end) = seeds.unwrap_or_else(|| {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        (seed, seed + 1)
    });
    for seed in start..end {
        match run_seed(seed, operations, preset) {
            Ok(report) => println!(
                "seed {seed} ok: trace {:016x}, {} ops, {} FUSE requests, {} S3 requests, {} faults, {} interrupts, {:?} simulated (faults: {})",
                report.trace_hash,
                report.operations,
                report.fuse_requests,
                report.s3_requests,
                report.faults_injected,
                report.interrupts,
                report.simulated_time,
                preset_name(preset)
            ),
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn parse(text: &str) -> u64 {
    text.parse().unwrap_or_else(|_| usage(&format!("not a number: {text}")))
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("goofys-vopr: {problem}");
    }
    eprintln!("usage: goofys-vopr [--seed N | --seeds A..B] [--ops M] [--faults swarm|flaky|throttled|chaos|none]");
    std::process::exit(if problem.is_empty() { 0 } else { 2 })
}
