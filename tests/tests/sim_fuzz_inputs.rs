//! The fuzz target's body on fixed inputs: it builds, runs and passes in every `cargo test`.

use goofys_sim::fuzz::run_fuzz_input;
use goofys_sim::rng::{Entropy, SimRng};

#[test]
fn edge_inputs_run_clean() {
    for input in [&[][..], &[0u8; 64][..], &[0xFFu8; 64][..], &[1, 2, 3][..]] {
        run_fuzz_input(input).unwrap_or_else(|failure| panic!("{failure}"));
    }
}

#[test]
fn pseudo_random_inputs_run_clean() {
    let mut rng = SimRng::new(99);
    for _ in 0..100 {
        let len = rng.below(2000) as usize;
        let input: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        run_fuzz_input(&input).unwrap_or_else(|failure| panic!("{failure}"));
    }
}
