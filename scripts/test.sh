#!/usr/bin/env bash
# Builds coldboot twice and runs every test in both builds:
#   build/       warnings as errors
#   build-asan/  warnings as errors, AddressSanitizer + UndefinedBehaviorSanitizer
# Exits non-zero when anything fails to build or any test fails.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

bash scripts/deps.sh

jobs=${CB_JOBS:-2}
status=0

run_build() {
	local dir=$1
	shift
	echo "== $dir: configure and build"
	cmake -S . -B "$dir" -DCOLDBOOT_WERROR=ON "$@" &&
		cmake --build "$dir" -j "$jobs" &&
		echo "== $dir: ctest" &&
		ctest --test-dir "$dir" --output-on-failure -j "$jobs"
}

run_build build || status=1

# ASan reports leaks as failures too; UBSan stops at the first report (-fno-sanitize-recover).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
run_build build-asan -DCOLDBOOT_SANITIZE=ON || status=1

if ((status != 0)); then
	echo "test.sh: FAILED (see above)" >&2
else
	echo "test.sh: all builds and tests passed"
fi
exit "$status"
