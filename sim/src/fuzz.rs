//! The fuzzing entry point: arbitrary bytes steer the scenario generator, the fault model and
//! the timing, and the run is checked like any other. The cargo-fuzz target in `sim/fuzz` calls
//! [`run_fuzz_input`]; a normal test runs it on fixed inputs, so it always builds and works.

use crate::faults::{FaultConfig, FaultPlan};
use crate::rng::ByteEntropy;
use crate::scenario::{ScenarioSize, generate};
use crate::simulation::run;

/// Runs the simulation described by `data`. Returns the failure, if the run found one.
pub fn run_fuzz_input(data: &[u8]) -> Result<(), String> {
    let mut entropy = ByteEntropy::new(data);
    let operations = (data.len() / 8).clamp(1, 200);
    let scenario = generate(&mut entropy, ScenarioSize { operations });
    let faults = FaultConfig::swarm(&mut entropy);
    run(&scenario, FaultPlan::Random(faults)).map(|_| ()).map_err(|failure| failure.to_string())
}
