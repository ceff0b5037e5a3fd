//! VOPR mode: one seed → one swarm scenario and fault model → one checked run.
//!
//! The seed fixes everything (sub-seeds for the scenario, the faults and the timing are
//! derived from it), so `goofys-vopr --seed N --ops M` replays a run exactly, with the same
//! trace hash. A failure prints the command that replays it.

use crate::faults::{FaultConfig, FaultPlan};
use crate::rng::{SimRng, derive_seed};
use crate::scenario::{Scenario, ScenarioSize, generate};
use crate::simulation::{Report, SimFailure, run};

/// Which fault model a seed runs with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultPreset {
    None,
    Flaky,
    Throttled,
    Chaos,
    /// A random mix chosen by the seed.
    Swarm,
}

impl FaultPreset {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(FaultPreset::None),
            "flaky" => Some(FaultPreset::Flaky),
            "throttled" => Some(FaultPreset::Throttled),
            "chaos" => Some(FaultPreset::Chaos),
            "swarm" => Some(FaultPreset::Swarm),
            _ => None,
        }
    }

    fn config(self, seed: u64) -> FaultConfig {
        match self {
            FaultPreset::None => FaultConfig::none(),
            FaultPreset::Flaky => FaultConfig::flaky(),
            FaultPreset::Throttled => FaultConfig::throttled(),
            FaultPreset::Chaos => FaultConfig::chaos(),
            FaultPreset::Swarm => FaultConfig::swarm(&mut SimRng::new(derive_seed(seed, 20))),
        }
    }
}

/// The scenario and fault plan of a seed.
pub fn seed_setup(seed: u64, operations: usize, preset: FaultPreset) -> (Scenario, FaultPlan) {
    let scenario = generate(&mut SimRng::new(derive_seed(seed, 10)), ScenarioSize { operations });
    (scenario, FaultPlan::Random(preset.config(seed)))
}

/// Runs one seed. On failure the error says how to replay it.
pub fn run_seed(seed: u64, operations: usize, preset: FaultPreset) -> Result<Report, String> {
    let (scenario, plan) = seed_setup(seed, operations, preset);
    run(&scenario, plan).map_err(|failure: SimFailure| {
        format!(
            "seed {seed} failed {failure}\nreproduce: cargo run -p goofys-sim --release --bin goofys-vopr -- --seed {seed} --ops {operations} --faults {}",
            preset_name(preset)
        )
    })
}

pub fn preset_name(preset: FaultPreset) -> &'static str {
    match preset {
        FaultPreset::None => "none",
        FaultPreset::Flaky => "flaky",
        FaultPreset::Throttled => "throttled",
        FaultPreset::Chaos => "chaos",
        FaultPreset::Swarm => "swarm",
    }
}
