#!/usr/bin/env bash
# Unpacking while downloading, measured: for each bundle, the median of 5 cold starts of
#   curl -o /dev/null URL            the download alone
#   coldboot ensure --url URL        over HTTP (nginx; the zip is unpacked while it downloads)
#   coldboot ensure --url file://    extraction of the same zip from a local file
# each with a fresh --dir on /dev/shm, from nginx at full loopback speed and paced at 100 MB/s
# (limit_rate), plus, paced, the same server with `etag off`, which turns streaming off (a
# strong ETag is required): download, then unpack, as before streaming.
#
#   bench/stream.sh [BUILD_DIR]      # default build-bench (a Release build)
#
# Needs nginx. Servers bind 127.0.0.1 only and are stopped when the run ends.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$repo/build-bench}
cb=$build/coldboot
bundles=${BENCH_DIR:-/dev/shm/coldboot-bench}/bundles
work=$(mktemp -d /tmp/cb-stream-bench.XXXXXX)
port=${BENCH_PORT:-18089}

cat >"$work/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $work/body;
    proxy_temp_path $work/proxy;
    fastcgi_temp_path $work/fcgi;
    uwsgi_temp_path $work/uwsgi;
    scgi_temp_path $work/scgi;
    sendfile on;
    server { listen 127.0.0.1:$port; root $bundles; }
    server { listen 127.0.0.1:$((port + 1)); root $bundles; limit_rate 100m; }
    server { listen 127.0.0.1:$((port + 2)); root $bundles; limit_rate 100m; etag off; }
}
CONF
nginx -c "$work/nginx.conf" &
nginx_pid=$!
trap 'kill "$nginx_pid" 2>/dev/null || true; wait "$nginx_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do
	curl -s -o /dev/null "http://127.0.0.1:$port/" && break
	sleep 0.1
done

# median_ms LABEL COMMAND...: runs COMMAND 5 times (DIR in it is a fresh cache root).
median_ms() {
	local label=$1 times=() t0 t1 dir
	shift
	for i in 1 2 3 4 5; do
		dir=/dev/shm/cb-stream-bench-$$-$i
		rm -rf "$dir"
		t0=$(date +%s%N)
		"${@//DIR/$dir}" >/dev/null
		t1=$(date +%s%N)
		times+=($(((t1 - t0) / 1000000)))
		rm -rf "$dir"
	done
	printf '%-34s median %5d ms   runs %s\n' "$label" \
		"$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)" "${times[*]}"
}

for name in sitepkgs browser; do
	zip=$bundles/$name.zip
	sum=$("$cb" hash "$zip" | awk '{print $1}')
	for p in $port $((port + 1)); do
		rate=$([[ $p == "$port" ]] && echo "loopback" || echo "100 MB/s")
		url=http://127.0.0.1:$p/$name.zip
		median_ms "$name curl ($rate)" curl -s -o /dev/null "$url"
		median_ms "$name http ($rate)" "$cb" ensure -q --url "$url" --checksum "$sum" --dir DIR
	done
	median_ms "$name http, no streaming (100 MB/s)" "$cb" ensure -q \
		--url "http://127.0.0.1:$((port + 2))/$name.zip" --checksum "$sum" --dir DIR
	median_ms "$name file://" "$cb" ensure -q --url "file://$zip" --checksum "$sum" --dir DIR
done
