//! Helpers for tests that use a mount as a person would: test data, byte-exact comparisons
//! that say where two files differ, external tools (`tar`, `rsync`, `fsx`) run to success or
//! a failure message with their output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `len` bytes of a fast pseudorandom stream (xorshift64*) determined by `seed`: cheap to make
/// in bulk, and no two offsets or seeds look alike, so misplaced bytes are caught.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Panics unless `actual` equals `expected`, saying where they first differ (never printing
/// megabytes of bytes).
#[track_caller]
pub fn assert_same_bytes(what: &str, actual: &[u8], expected: &[u8]) {
    if actual == expected {
        return;
    }
    let first_difference =
        actual.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(actual.len().min(expected.len()));
    let around = |bytes: &[u8]| bytes[first_difference..bytes.len().min(first_difference + 16)].to_vec();
    panic!(
        "{what}: {} bytes, expected {}; first difference at offset {first_difference}: {:?} instead of {:?}",
        actual.len(),
        expected.len(),
        around(actual),
        around(expected)
    );
}

/// Runs `command` and returns its output; panics with the command line, its status and its
/// output if it fails (or cannot start).
#[track_caller]
pub fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    if !output.status.success() {
        panic!("{command:?} failed with {}:\n{}", output.status, describe_output(&output));
    }
    output
}

/// A command's error lines (a panic and its error, an `ERROR` log line, an `error:`), then the tail of its
/// stdout and stderr, for failure messages. The error lines come first so a log cut in the
/// middle still shows why the command failed.
pub fn describe_output(output: &Output) -> String {
    const TAIL_LINES: usize = 40;
    const ERROR_LINES: usize = 20;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let is_error = |line: &&str| ["panicked", "Err value", "ERROR", "error:"].iter().any(|mark| line.contains(mark));
    let errors: Vec<&str> = stdout.lines().chain(stderr.lines()).filter(is_error).take(ERROR_LINES).collect();
    let tail = |text: &str| {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    };
    format!(
        "--- error lines\n{}\n--- stdout (tail)\n{}\n--- stderr (tail)\n{}",
        errors.join("\n"),
        tail(&stdout),
        tail(&stderr)
    )
}

/// Finds an installed tool: `$<env>` if set, else `name` on PATH, else in `$CARGO_HOME/bin`
/// (or `~/.cargo/bin`). Panics with `install_hint` if there is none: a test that needs it must
/// fail, not pass without it.
#[track_caller]
pub fn tool(name: &str, env: &str, install_hint: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        return PathBuf::from(path);
    }
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    match std::env::var_os("CARGO_HOME") {
        Some(cargo_home) => dirs.push(Path::new(&cargo_home).join("bin")),
        None => dirs.extend(std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo/bin"))),
    }
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed (nor ${env} set). {install_hint}"))
}
