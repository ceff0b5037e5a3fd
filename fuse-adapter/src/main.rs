//! The `goofys-rs` command: parse the command line, then run it (see `goofys_fuse::run`).

fn main() -> std::process::ExitCode {
    let invocation = goofys_fuse::cli::parse_args(std::env::args_os());
    goofys_fuse::run::run(invocation)
}
