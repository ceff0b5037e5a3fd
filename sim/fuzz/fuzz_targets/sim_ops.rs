//! Fuzz target: arbitrary bytes as a simulated workload with faults; any failed check panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(failure) = goofys_sim::fuzz::run_fuzz_input(data) {
        panic!("{failure}");
    }
});
