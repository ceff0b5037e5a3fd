//! Seeded randomness for the simulator, from a PRNG or from fuzzer bytes.
//!
//! Every random choice of a run (the scenario, fault decisions, latencies, timing) goes
//! through [`Entropy`], so the same seed replays the same run, and a fuzzer can steer the same
//! generators with its bytes.

use rand_core::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// A source of random numbers.
pub trait Entropy {
    fn next_u64(&mut self) -> u64;

    /// A uniform number in `0..bound` (0 when `bound` is 0).
    fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 { 0 } else { self.next_u64() % bound }
    }

    /// A uniform number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high.saturating_sub(low).saturating_add(1))
    }

    /// True with probability `per_million / 1_000_000`.
    fn chance(&mut self, per_million: u32) -> bool {
        self.below(1_000_000) < u64::from(per_million)
    }

    /// One element of a non-empty slice.
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// A roughly exponentially distributed duration in nanoseconds with the given mean,
    /// capped at ten means so every latency is bounded. Integer arithmetic only, so it gives
    /// the same numbers on every platform: a geometric number of halvings plus a uniform
    /// fraction, scaled by ln 2.
    fn exponential_nanos(&mut self, mean_nanos: u64) -> u64 {
        if mean_nanos == 0 {
            return 0;
        }
        let halvings = u128::from(self.next_u64().leading_zeros());
        let fraction_millionths = u128::from(self.below(1_000_000));
        let scaled = u128::from(mean_nanos) * 693_147 * (halvings * 1_000_000 + fraction_millionths);
        let sample = (scaled / 1_000_000_000_000) as u64;
        sample.min(mean_nanos.saturating_mul(10))
    }
}

/// The simulator's PRNG: PCG-64 (MCG), a portable algorithm, so seeds stay valid across
/// platforms and dependency updates.
#[derive(Clone, Debug)]
pub struct SimRng(Pcg64Mcg);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        SimRng(Pcg64Mcg::seed_from_u64(seed))
    }

    /// A seed for an independent stream, derived from this one.
    pub fn fork(&mut self) -> SimRng {
        SimRng::new(self.next_u64())
    }
}

impl Entropy for SimRng {
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
}

/// Entropy read from fuzzer bytes; zeros once they run out, which steers every generator to
/// its smallest choice, so runs always end.
#[derive(Clone, Debug)]
pub struct ByteEntropy<'a> {
    bytes: &'a [u8],
}

impl<'a> ByteEntropy<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        ByteEntropy { bytes }
    }
}

impl Entropy for ByteEntropy<'_> {
    fn next_u64(&mut self) -> u64 {
        let take = self.bytes.len().min(8);
        let mut word = [0u8; 8];
        word[..take].copy_from_slice(&self.bytes[..take]);
        self.bytes = &self.bytes[take..];
        u64::from_le_bytes(word)
    }
}

/// SplitMix64 finaliser: derives well-mixed sub-seeds from a master seed and a label.
pub fn derive_seed(master: u64, label: u64) -> u64 {
    let mut z = master ^ label.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let mut a = SimRng::new(5);
        let mut b = SimRng::new(5);
        let xs: Vec<u64> = (0..10).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..10).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(SimRng::new(6).next_u64(), xs[0]);
    }

    #[test]
    fn helpers_stay_in_their_bounds() {
        let mut rng = SimRng::new(1);
        for _ in 0..1000 {
            assert!(rng.below(7) < 7);
            let x = rng.between(3, 5);
            assert!((3..=5).contains(&x));
            assert!(rng.exponential_nanos(100) <= 1000);
        }
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn byte_entropy_reads_bytes_then_zeros() {
        let mut entropy = ByteEntropy::new(&[1, 0, 0, 0, 0, 0, 0, 0, 2]);
        assert_eq!(entropy.next_u64(), 1);
        assert_eq!(entropy.next_u64(), 2);
        assert_eq!(entropy.next_u64(), 0);
    }
}
