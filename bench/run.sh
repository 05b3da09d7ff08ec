#!/usr/bin/env bash
# coldboot's benchmark (issue 7): builds a Release coldboot in build-bench/, makes sure the
# tools it compares with are installed, then runs bench/run.py, which writes
# docs/benchmarks.md and docs/benchmarks.svg. All options go to run.py:
#
#   bench/run.sh            # full run: three bundles, tmpfs and ext4, 5 rounds (~20 minutes on
#                           # an idle 2-core VM, more when other work shares the cores)
#   bench/run.sh --quick    # the sitepkgs bundle, 3 rounds (~5 minutes idle, ~13 loaded)
#   bench/run.sh --reps 9 --bundles browser --fs tmpfs
#   bench/run.sh --bundles nodemods   # only the node_modules-like bundle (45k files)
#   bench/run.sh --zip mine=/path/to/bundle.zip   # a zip of your own, same contenders
#
# Environment: BENCH_DIR (default /dev/shm/coldboot-bench) holds the generated zips, the
# s3rver data and the tmpfs runs; BENCH_EXT4_DIR (default /tmp/coldboot-bench-ext4) the
# ext4 runs. Servers bind 127.0.0.1 only and are stopped when the run ends.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# Debian packages used only by the benchmark, installed when missing (root or sudo).
need=()
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
command -v hyperfine >/dev/null 2>&1 || need+=(hyperfine)
[[ -x /usr/bin/time ]] || need+=(time)
[[ -x /usr/bin/aws ]] || need+=(awscli)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind)
command -v strace >/dev/null 2>&1 || need+=(strace)
if ((${#need[@]} > 0)); then
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		sudo=(sudo -n)
	fi
	echo "bench: installing ${need[*]}" >&2
	if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; }; then
		echo "bench: could not install ${need[*]}; run.py falls back where it can and says so" >&2
	fi
fi
if [[ ! -d node_modules/@20minutes/s3rver ]]; then
	echo "bench: installing the S3 peer (npm ci)" >&2
	npm ci --no-audit --no-fund >&2
fi

cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-bench -j2 --target coldboot >/dev/null
# The file system's floor for the same tree, written from memory (bench/write_floor.c).
cc -O2 -pthread -o build-bench/write_floor bench/write_floor.c

exec python3 bench/run.py --coldboot build-bench/coldboot --command "bench/run.sh${*:+ $*}" "$@"
