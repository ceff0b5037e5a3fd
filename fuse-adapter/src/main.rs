//! The `goofys-rs` command: parse the command line, then run it (see `goofys_fuse::run`).
//!
//! The binary allocates with jemalloc. A mount's large buffers (the transport's read buffers,
//! whose frames the core keeps until read, assembled reads and upload parts) are allocated on
//! one thread and freed on another. glibc's malloc either keeps such buffers in its heaps, where
//! freed memory rarely goes back and RSS grows past `--memory-limit`, or, with a fixed mmap
//! threshold, maps and unmaps each one, and every first touch of a page faults: a quarter of the
//! mount's CPU on a sequential read. jemalloc reuses freed extents at once and returns the ones
//! left unused for a second (the options below), which keeps RSS near what is in use.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start: dirty pages unused for 1 s go back to the system
/// (the default keeps them 10 s), at once rather than first as "muzzy" pages.
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static ALLOCATOR_OPTIONS: Option<&'static std::ffi::c_char> =
    // SAFETY: a pointer to the first byte of a NUL-terminated static string, as jemalloc's
    // `const char *malloc_conf` expects; it lives for the whole program.
    Some(unsafe { &*c"dirty_decay_ms:1000,muzzy_decay_ms:0".as_ptr() });

fn main() -> std::process::ExitCode {
    let invocation = goofys_fuse::cli::parse_args(std::env::args_os());
    goofys_fuse::run::run(invocation)
}
