#!/usr/bin/env bash
# Shows coldboot's main job on the example bundle:
#   build the bundle zip from examples/bundle/, take its checksum, serve it from a
#   loopback HTTP server, then start examples/handler.sh through coldboot twice:
#   a cold start (download, verify, unpack, publish) and a warm start (nothing to do).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

bash scripts/deps.sh

echo "== build"
cmake -S . -B build -DCOLDBOOT_WERROR=ON >/dev/null
cmake --build build -j "${CB_JOBS:-2}" --target coldboot
cb=$repo/build/coldboot

work=$(mktemp -d "${TMPDIR:-/tmp}/coldboot-demo.XXXXXX")
server_pid=
cleanup() {
	if [[ -n "$server_pid" ]]; then
		kill "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

echo
echo "== the bundle zip, from examples/bundle/"
mkdir -p "$work/www"
zip_path=$work/www/bundle.zip
if "$cb" pack -o "$zip_path" examples/bundle >"$work/pack.out" 2>"$work/pack.err"; then
	echo "made with: coldboot pack -o bundle.zip examples/bundle, which printed:"
	sed 's/^/  /' "$work/pack.out"
else
	# Info-ZIP keeps symlinks as links (-y) and the files' modes.
	(cd examples/bundle && zip -q -r -y "$zip_path" .)
	echo "made with: zip -r -y bundle.zip ."
fi
unzip -Z1 "$zip_path" | sed 's/^/  /'
checksum=$("$cb" hash "$zip_path" | grep -o 'xxh3:[0-9a-f]\{32\}' | head -n 1)
if [[ -z "$checksum" ]]; then
	echo "demo: coldboot hash printed no xxh3 checksum" >&2
	exit 1
fi
echo "checksum (coldboot hash): $checksum"

echo
echo "== a static HTTP server on 127.0.0.1"
python3 tests/servers/static_server.py --root "$work/www" --log "$work/requests.log" \
	--max-seconds 600 >"$work/port" &
server_pid=$!
for _ in $(seq 100); do
	[[ -s "$work/port" ]] && break
	sleep 0.1
done
port=$(head -n 1 "$work/port")
if [[ -z "$port" ]]; then
	echo "demo: the HTTP server did not start" >&2
	exit 1
fi
url=http://127.0.0.1:$port/bundle.zip
echo "serving $url"

cache=$work/cache
run_once() {
	local title=$1 started finished status=0
	shift
	echo
	echo "== $title: coldboot --url $url --checksum $checksum --dir $cache -- $*"
	started=$(date +%s%N)
	"$cb" --url "$url" --checksum "$checksum" --dir "$cache" -- "$@" || status=$?
	finished=$(date +%s%N)
	echo "-- exit status $status, $(((finished - started) / 1000000)) ms," \
		"HTTP requests so far: $(wc -l <"$work/requests.log")"
	return "$status"
}

run_once "cold start" examples/handler.sh 0
run_once "warm start" examples/handler.sh 0
run_once "warm start, a Python handler" python3 examples/handler.py demo

echo
echo "== the cache"
ls -l "$cache" "$cache/bundles"
echo "marker: $(cat "$cache/current/.coldboot.json")"
"$cb" status --dir "$cache"

# ---- container-recycle simulation (examples/recycle/, owned by the stats work) ----
# 133 starts with containers recycled before starts 1, 30, 61, 90 and 118, each start recorded with
# --stats, then `coldboot stats` on the records. It downloads from the server above.
if [[ -f examples/recycle/recycle.py ]]; then
	echo
	echo "== container-recycle simulation: examples/recycle/recycle.py"
	python3 examples/recycle/recycle.py --coldboot "$cb" --url "$url" --checksum "$checksum" \
		--work "$work/recycle"
	echo "-- HTTP requests so far: $(wc -l <"$work/requests.log")"
fi
# ---- end of the container-recycle simulation ----

echo
echo "demo: done"
