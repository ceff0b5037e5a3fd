//! The core stays pure: no IO crates in its dependency tree, no clocks, threads, environment
//! or randomly ordered maps in its source. `core/clippy.toml` enforces the same at lint time;
//! these tests make `cargo test` fail too.

use std::path::Path;
use std::process::Command;

/// Crates that do IO, run an async runtime or talk to the kernel.
const FORBIDDEN_CRATES: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "hyper-util",
    "fuser",
    "mio",
    "socket2",
    "nix",
    "aws-config",
    "aws-smithy-runtime",
    "async-std",
    "smol",
];

#[test]
fn the_core_depends_on_no_io_crate() {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "-p", "goofys-core", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout).expect("utf-8");
    let crates: Vec<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(crates.contains(&"goofys-core"), "the tree lists the core itself: {tree}");
    let found: Vec<&str> = crates.iter().copied().filter(|name| FORBIDDEN_CRATES.contains(name)).collect();
    assert!(found.is_empty(), "goofys-core must stay IO-free but depends on {found:?}");
}

/// Source patterns that would make the core read the machine instead of its inputs.
const FORBIDDEN_SOURCE: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "thread::spawn",
    "env::var",
    "HashMap",
    "HashSet",
    "thread_rng",
    "std::fs",
    "std::net",
];

#[test]
fn the_core_source_reads_no_clock_thread_environment_or_unordered_map() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offences = Vec::new();
    for entry in std::fs::read_dir(&src).expect("core/src exists") {
        let path = entry.expect("readable").path();
        let text = std::fs::read_to_string(&path).expect("readable source");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for pattern in FORBIDDEN_SOURCE {
                if code.contains(pattern) {
                    offences.push(format!("{}:{}: {pattern}", path.display(), number + 1));
                }
            }
        }
    }
    assert!(offences.is_empty(), "impure code in goofys-core:\n{}", offences.join("\n"));
}

#[test]
fn clippy_bans_the_impure_calls_in_the_core() {
    let clippy =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("clippy.toml")).expect("clippy.toml");
    for banned in ["std::time::Instant::now", "std::time::SystemTime::now", "std::thread::spawn", "std::env::var"] {
        assert!(clippy.contains(&format!("\"{banned}\"")), "core/clippy.toml must disallow {banned}");
    }
}
