//! A bounded fuzzer that runs on stable Rust, for the targets cargo-fuzz also runs: without
//! coverage feedback, it feeds each target seeded random inputs and mutations of its seed
//! corpus (bit flips, byte and block changes, insertions, deletions, splices of two seeds, and
//! "interesting" bytes such as `<`, `&`, `%`, 0xFF) for a fixed time, and stops at the first
//! panic with the input that caused it (written to a file and printed in hex), so it becomes
//! a named regression test.
//!
//! The runs are deterministic for a seed: `goofys-fuzz --target s3_xml --seed 7 --seconds 300`
//! replays the same inputs in the same order (how many depends on the machine's speed).

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use goofys_sim::rng::{Entropy as _, SimRng};

/// A fuzz target: a name, a function that panics on a bug, and a corpus to start from.
#[derive(Debug)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Inputs longer than this are cut (the simulator's runs grow with their input).
    pub max_len: usize,
}

fn run_sim_ops(data: &[u8]) {
    if let Err(failure) = goofys_sim::fuzz::run_fuzz_input(data) {
        panic!("{failure}");
    }
}

fn sim_seeds() -> Vec<Vec<u8>> {
    vec![Vec::new(), vec![0; 64], vec![0xFF; 64], (0..=255).collect()]
}

/// Every target: `sim_ops` (the simulator with faults, as `sim/fuzz`), `s3_xml` (the
/// transport's reply parsers).
pub fn targets() -> Vec<Target> {
    vec![
        Target { name: "sim_ops", run: run_sim_ops, seeds: sim_seeds, max_len: 1600 },
        Target {
            name: "s3_xml",
            run: goofys_s3::fuzz::parse_reply_input,
            seeds: goofys_s3::fuzz::seed_replies,
            max_len: 4096,
        },
    ]
}

/// What a run did.
#[derive(Debug)]
pub struct Outcome {
    pub executions: u64,
    pub elapsed: Duration,
    /// The first input that panicked, and the panic's message.
    pub crash: Option<(Vec<u8>, String)>,
}

const INTERESTING: [u8; 16] =
    [0, 0xFF, 0x7F, 0x80, 0xC3, b'<', b'>', b'&', b'%', b'/', b'"', b'\n', b'\r', b'+', b';', b'='];

/// One mutation of `input` (or a splice with `other`), at most `max_len` bytes.
fn mutate(rng: &mut SimRng, input: &mut Vec<u8>, other: &[u8], max_len: usize) {
    let at = |rng: &mut SimRng, len: usize| rng.below(len.max(1) as u64) as usize;
    match rng.below(8) {
        0 if !input.is_empty() => {
            let i = at(rng, input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let i = at(rng, input.len());
            input[i] = rng.next_u64() as u8;
        }
        2 if !input.is_empty() => {
            let i = at(rng, input.len());
            input[i] = *rng.pick(&INTERESTING);
        }
        3 => {
            let i = at(rng, input.len() + 1).min(input.len());
            let count = 1 + rng.below(8) as usize;
            let bytes: Vec<u8> = (0..count).map(|_| *rng.pick(&INTERESTING)).collect();
            input.splice(i..i, bytes);
        }
        4 if !input.is_empty() => {
            let start = at(rng, input.len());
            let end = (start + 1 + rng.below(16) as usize).min(input.len());
            input.drain(start..end);
        }
        5 if !input.is_empty() => {
            // Repeat a block: deep nesting and long runs.
            let start = at(rng, input.len());
            let end = (start + 1 + rng.below(32) as usize).min(input.len());
            let block = input[start..end].repeat(1 + rng.below(8) as usize);
            input.splice(start..start, block);
        }
        6 if !other.is_empty() => {
            let cut = at(rng, input.len() + 1).min(input.len());
            let from = at(rng, other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        _ => {
            let i = at(rng, input.len() + 1).min(input.len());
            input.insert(i, rng.next_u64() as u8);
        }
    }
    input.truncate(max_len);
}

/// Runs `target` for `duration`, from `seed`.
pub fn fuzz(target: &Target, seed: u64, duration: Duration) -> Outcome {
    let mut rng = SimRng::new(seed);
    let corpus = (target.seeds)();
    let started = Instant::now();
    let mut executions = 0u64;
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut crash = None;
    while started.elapsed() < duration {
        let input = if corpus.is_empty() || rng.below(8) == 0 {
            let len = rng.below(target.max_len as u64 + 1) as usize;
            (0..len).map(|_| rng.next_u64() as u8).collect()
        } else {
            let mut input = rng.pick(&corpus).clone();
            let other = rng.pick(&corpus).clone();
            for _ in 0..1 + rng.below(16) {
                mutate(&mut rng, &mut input, &other, target.max_len);
            }
            input
        };
        executions += 1;
        if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| (target.run)(&input))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                .unwrap_or_else(|| "a panic without a message".into());
            crash = Some((input, message));
            break;
        }
    }
    std::panic::set_hook(previous_hook);
    Outcome { executions, elapsed: started.elapsed(), crash }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_that_panics_on_a_byte_is_caught_with_its_input() {
        fn panics_on_ff(data: &[u8]) {
            assert!(!data.contains(&0xFF), "found 0xFF");
        }
        let target = Target { name: "test", run: panics_on_ff, seeds: || vec![b"abc".to_vec()], max_len: 64 };
        let outcome = fuzz(&target, 1, Duration::from_secs(10));
        let (input, message) = outcome.crash.expect("the fuzzer finds 0xFF within 10 s");
        assert!(input.contains(&0xFF), "{input:?}");
        assert!(message.contains("found 0xFF"), "{message}");
    }

    #[test]
    fn each_target_runs_clean_for_a_moment() {
        for target in targets() {
            let outcome = fuzz(&target, 3, Duration::from_millis(300));
            assert!(outcome.crash.is_none(), "{}: {:?}", target.name, outcome.crash);
            assert!(outcome.executions > 0);
        }
    }
}
