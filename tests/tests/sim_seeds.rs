//! The simulator's seeds: 500 swarm seeds of 500 operations each with faults on, every fault
//! preset, replay determinism, and the seeds that once found bugs.
//!
//! To run many more: `cargo run -p goofys-sim --release --bin goofys-vopr -- --seeds 0..10000`.

use goofys_sim::vopr::{FaultPreset, run_seed};

const OPERATIONS: usize = 500;

fn run_seeds(seeds: std::ops::Range<u64>, preset: FaultPreset) {
    for seed in seeds {
        if let Err(failure) = run_seed(seed, OPERATIONS, preset) {
            panic!("{failure}");
        }
    }
}

// 500 seeds in four tests, so they run in parallel.
#[test]
fn swarm_seeds_0_to_125() {
    run_seeds(0..125, FaultPreset::Swarm);
}

#[test]
fn swarm_seeds_125_to_250() {
    run_seeds(125..250, FaultPreset::Swarm);
}

#[test]
fn swarm_seeds_250_to_375() {
    run_seeds(250..375, FaultPreset::Swarm);
}

#[test]
fn swarm_seeds_375_to_500() {
    run_seeds(375..500, FaultPreset::Swarm);
}

#[test]
fn every_fault_preset_passes() {
    run_seeds(10_000..10_020, FaultPreset::Chaos);
    run_seeds(20_000..20_020, FaultPreset::Flaky);
    run_seeds(30_000..30_020, FaultPreset::Throttled);
    run_seeds(40_000..40_020, FaultPreset::None);
}

#[test]
fn a_seed_replays_with_the_same_trace_hash() {
    for seed in [0, 1, 2, 3, 5, 8, 13, 21, 34, 55] {
        let first = run_seed(seed, OPERATIONS, FaultPreset::Swarm).expect("passes");
        let second = run_seed(seed, OPERATIONS, FaultPreset::Swarm).expect("passes");
        assert_eq!(first, second, "seed {seed} must replay exactly");
    }
    let a = run_seed(1, OPERATIONS, FaultPreset::Swarm).unwrap();
    let b = run_seed(2, OPERATIONS, FaultPreset::Swarm).unwrap();
    assert_ne!(a.trace_hash, b.trace_hash, "different seeds are different runs");
}

/// Seeds that found bugs while the simulator was built (each also has a scripted regression
/// test in goofys-core's tests): a read of a deleted object (15), cache deadlines of a slow
/// lookup (206), identical concurrent requests sharing a fault budget (430), a truncated GET
/// after failed attempts (472), a listing entry released late (7332), a swept inode in a listing
/// (16704); with writes: a conflicted commit retried at release (620), a rename onto a name
/// negatively cached (5350; scripted in tests/tests/write_path.rs), an answer asked earlier
/// replacing a newer one (9051), a write answered EEXIST after a conflict (10698), a reader
/// seeing a writer of this mount (11029, a checker fix), a conditional PUT of a deleted file
/// answered 404 (12624), a handle opened while this mount extended the file prefetching past
/// the object's end (5147; scripted in goofys-core's tests/reads_across_own_changes.rs); and
/// a checker fix: a listing's pages seeing a name as a file, then its shadowing directory gone
/// (980; `history::tests::regression_a_listing_may_see_a_file_whose_shadowing_directory_went_away_in_a_later_page`).
#[test]
fn seeds_that_once_failed_pass() {
    for seed in [15, 206, 430, 472, 620, 980, 5147, 5350, 7332, 9051, 10698, 11029, 12624, 16704] {
        if let Err(failure) = run_seed(seed, OPERATIONS, FaultPreset::Swarm) {
            panic!("{failure}");
        }
    }
}
