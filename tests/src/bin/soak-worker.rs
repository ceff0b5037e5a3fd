//! One worker process of the soak (`tests/tests/soak.rs`): mixed file operations in its own
//! directory of a mount until a deadline, then its ledger written for the soak to check.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(message) = goofys_tests::soak::worker_main(&args) {
        eprintln!("soak-worker: {message}");
        std::process::exit(2);
    }
}
