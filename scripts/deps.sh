#!/usr/bin/env bash
# Installs what building and testing coldboot needs on Debian 12, and only what is missing.
# Safe to run again and again; needs no terminal (CI=true is fine). Runs apt-get as root,
# or through sudo when not root.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

packages=(build-essential cmake pkg-config libcurl4-openssl-dev libzip-dev libxxhash-dev
	libcmocka-dev libdeflate-dev libisal-dev zip unzip xxhash python3 awscli strace nodejs npm)

# Packages whose tool may come from elsewhere: nodesource's nodejs bundles npm and conflicts
# with Debian's npm package, so a node and npm already on PATH are left alone.
declare -A provided_by=([nodejs]=node [npm]=npm)

missing=()
for pkg in "${packages[@]}"; do
	if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
		continue
	fi
	if [[ -n "${provided_by[$pkg]:-}" ]] && command -v "${provided_by[$pkg]}" >/dev/null 2>&1; then
		continue
	fi
	missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
	sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if ! command -v sudo >/dev/null 2>&1; then
			echo "deps: missing ${missing[*]}; run this script as root or install sudo" >&2
			exit 1
		fi
		sudo=(sudo -n)
	fi
	echo "deps: installing ${missing[*]}"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
	echo "deps: all Debian packages present"
fi

# The tests' Node dependencies (a local S3-compatible server), pinned by package-lock.json.
# npm writes node_modules/.package-lock.json after every install: older than the lock means stale.
if [[ -f "$repo/package-lock.json" ]]; then
	hidden_lock=$repo/node_modules/.package-lock.json
	if [[ -L $repo/node_modules ]]; then
		# Shared with another checkout (a git worktree): npm ci would empty the other one's.
		echo "deps: node_modules is a symlink; not reinstalling through it"
	elif [[ ! -f "$hidden_lock" || "$repo/package-lock.json" -nt "$hidden_lock" ]]; then
		echo "deps: npm ci"
		(cd "$repo" && npm ci --no-audit --no-fund --loglevel=error)
	else
		echo "deps: node_modules is up to date"
	fi
fi
