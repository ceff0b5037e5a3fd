//! `goofys-fuzz`: the stable-Rust fuzz runner (see `goofys_tests::fuzz_runner`), one target for
//! a bounded time.
//!
//! ```sh
//! cargo run -p goofys-tests --release --bin goofys-fuzz -- --target s3_xml --seconds 300
//! cargo run -p goofys-tests --release --bin goofys-fuzz -- --target sim_ops --seconds 300 --seed 7
//! ```
//!
//! Exit 0 with the count of executions, or 1 with the crashing input (hex, and written to
//! `fuzz-crash-TARGET-SEED.bin`).

use std::time::Duration;

use goofys_tests::fuzz_runner::{fuzz, targets};

fn usage() -> ! {
    let names: Vec<&str> = targets().iter().map(|target| target.name).collect();
    eprintln!("usage: goofys-fuzz --target {} [--seconds N] [--seed N]", names.join("|"));
    std::process::exit(2)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut target_name, mut seconds, mut seed) = (None, 60u64, 1u64);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--target" => target_name = Some(value),
            "--seconds" => seconds = value.parse().unwrap_or_else(|_| usage()),
            "--seed" => seed = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let Some(target) = targets().into_iter().find(|target| Some(target.name) == target_name.as_deref()) else {
        usage()
    };
    let outcome = fuzz(&target, seed, Duration::from_secs(seconds));
    let rate = outcome.executions as f64 / outcome.elapsed.as_secs_f64().max(1e-9);
    println!(
        "{}: {} executions in {:.1} s ({rate:.0}/s), seed {seed}",
        target.name,
        outcome.executions,
        outcome.elapsed.as_secs_f64()
    );
    if let Some((input, message)) = outcome.crash {
        let file = format!("fuzz-crash-{}-{seed}.bin", target.name);
        let _ = std::fs::write(&file, &input);
        let hex: String = input.iter().map(|byte| format!("{byte:02x}")).collect();
        eprintln!("CRASH: {message}\ninput ({} bytes, saved to {file}): {hex}", input.len());
        std::process::exit(1);
    }
}
