//! Property test over the simulator: scenarios and faults are data, so proptest can shrink a
//! failure to a few system calls and the faults that matter. Every failure it finds becomes a
//! named regression test below (and proptest keeps its seed in `proptest-regressions/`).

use std::time::Duration;

use goofys_sim::faults::{FaultDecision, FaultKind, FaultPlan};
use goofys_sim::rng::SimRng;
use goofys_sim::scenario::{ExternalStep, Mutation, PathIndex, RandomRead, Scenario, ScenarioSize, Syscall, generate};
use goofys_sim::simulation::run;
use proptest::prelude::*;

fn syscall() -> impl Strategy<Value = Syscall> {
    let path = any::<u32>().prop_map(PathIndex);
    prop_oneof![
        3 => path.clone().prop_map(|path| Syscall::Stat { path }),
        3 => (path.clone(), prop_oneof![Just(4096u32), Just(65536), Just(1 << 20)])
            .prop_map(|(path, chunk_bytes)| Syscall::Cat { path, chunk_bytes }),
        2 => (path.clone(), prop::collection::vec((0u32..1_100_000, prop_oneof![Just(1u32), Just(4096), Just(65536)]), 1..4))
            .prop_map(|(path, reads)| Syscall::ReadAt {
                path,
                reads: reads.into_iter().map(|(offset_per_million, size_bytes)| RandomRead { offset_per_million, size_bytes }).collect(),
            }),
        3 => (path, prop_oneof![Just(512u32), Just(4096)], any::<bool>(), any::<bool>())
            .prop_map(|(path, buffer_bytes, plus, rewind)| Syscall::List { path, buffer_bytes, plus, rewind }),
        1 => Just(Syscall::StatFs),
        1 => (1u32..=1_000_000).prop_map(|per_million| Syscall::Forget { per_million }),
        1 => prop_oneof![Just(0u64), Just(500), Just(70_000)].prop_map(|ms| Syscall::Sleep { duration: Duration::from_millis(ms) }),
    ]
}

fn fault() -> impl Strategy<Value = FaultDecision> {
    // "No fault" comes first, so shrinking moves toward it.
    let kind = prop_oneof![
        6 => Just(FaultKind::None),
        1 => Just(FaultKind::SlowDown),
        1 => Just(FaultKind::InternalError),
        1 => Just(FaultKind::ResetBeforeApply),
        1 => Just(FaultKind::ResetAfterApply),
        1 => (0u32..1_000_000).prop_map(|per_million| FaultKind::TruncateBody { per_million }),
        1 => Just(FaultKind::Stall),
    ];
    (kind, 0u64..20_000, 0u64..20_000).prop_map(|(kind, request_us, response_us)| FaultDecision {
        kind,
        request_latency: Duration::from_micros(request_us),
        response_latency: Duration::from_micros(response_us),
    })
}

/// A bucket and configuration from a seed, with the workload, the other client's changes and
/// the faults as shrinkable data.
fn case() -> impl Strategy<Value = (Scenario, Vec<FaultDecision>)> {
    (
        any::<u64>(),
        prop::collection::vec(prop::collection::vec(syscall(), 0..25), 1..4),
        prop::collection::vec((0u64..3000, any::<u32>(), any::<bool>(), 0u32..100_000), 0..10),
        prop::collection::vec(fault(), 0..300),
    )
        .prop_map(|(seed, processes, external, faults)| {
            let mut scenario = generate(&mut SimRng::new(seed), ScenarioSize { operations: 0 });
            let keys: Vec<String> = scenario.objects.iter().map(|o| o.key.clone()).collect();
            scenario.processes = processes;
            scenario.external = external
                .into_iter()
                .map(|(wait_ms, key_index, put, size_bytes)| {
                    let key = keys[key_index as usize % keys.len()].clone();
                    let mutation = if put {
                        Mutation::Put { key, size_bytes, content_seed: u64::from(key_index) }
                    } else {
                        Mutation::Delete { key }
                    };
                    ExternalStep { wait: Duration::from_millis(wait_ms), mutation }
                })
                .collect();
            (scenario, faults)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_reply_matches_the_reference_under_scripted_faults((scenario, faults) in case()) {
        if let Err(failure) = run(&scenario, FaultPlan::Scripted(faults)) {
            panic!("{failure}");
        }
    }
}
