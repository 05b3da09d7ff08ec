#!/usr/bin/env bash
# Builds coldboot's Lambda layer, a zip that Lambda unpacks under /opt:
#
#   bin/coldboot              the front binary, static: AWS_LAMBDA_EXEC_WRAPPER=/opt/bin/coldboot
#   extensions/coldboot       the same binary, started by Lambda as an external extension
#   bootstrap -> bin/coldboot for custom runtimes (provided.al2, provided.al2023)
#   lib/coldboot/             the cold helper program (coldboot-cold), every library it needs,
#                             and the glibc, dynamic loader included, they were all built against
#
# The front binary is linked statically (glibc, no dlopen, no name lookups): it needs nothing
# from the system, and a warm start maps no library at all. Only coldboot-cold, which the front
# runs on a cache miss, is dynamic. Why a private glibc for it: this machine builds against
# Debian 12's glibc 2.36, while Amazon Linux 2 has 2.26 and AL2023 2.34, and Debian has neither
# static libzip nor a static libcurl whose dependencies (Kerberos, LDAP, ...) all exist as
# static archives. So coldboot-cold is patched (patchelf) to use
# /opt/lib/coldboot/ld-linux-*.so as its program interpreter and /opt/lib/coldboot as its
# library path: it needs nothing from the system but the kernel either. What coldboot execs
# (the runtime, the handler) uses the system's own libraries as usual: lib/coldboot is never
# put in LD_LIBRARY_PATH.
#
# Usage: bash scripts/layer.sh [--arch x86_64|arm64] [-o OUT.zip] [--check]
#   --arch   target architecture (default: this machine's); arm64 is cross-compiled
#   -o       output zip (default: build-layer/coldboot-layer-ARCH.zip)
#   --check  after building, run the layer in a chroot holding nothing but the layer (arm64
#            under qemu-user): --version, pack, and a cold then a warm ensure from file://
#
# Installs what it needs when missing (patchelf; for arm64 gcc-aarch64-linux-gnu, the arm64
# -dev packages through multiarch, qemu-user-static). Needs root or sudo for that only.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
host_arch=$(uname -m)
arch=$host_arch
out=
check=0

while (($# > 0)); do
	case $1 in
	--arch) arch=$2; shift 2 ;;
	--arch=*) arch=${1#--arch=}; shift ;;
	-o) out=$2; shift 2 ;;
	--check) check=1; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "layer: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done
case $arch in
x86_64 | amd64) arch=x86_64 deb_arch=amd64 triplet=x86_64-linux-gnu loader=ld-linux-x86-64.so.2 ;;
arm64 | aarch64) arch=arm64 deb_arch=arm64 triplet=aarch64-linux-gnu loader=ld-linux-aarch64.so.1 ;;
*) echo "layer: --arch must be x86_64 or arm64" >&2; exit 2 ;;
esac
[[ $host_arch == x86_64 ]] || [[ $arch == "$host_arch" || ($arch == arm64 && $host_arch == aarch64) ]] || {
	echo "layer: cross builds are set up from x86_64 only" >&2
	exit 2
}
cross=0
[[ $arch == arm64 && $host_arch == x86_64 ]] && cross=1

layer_dir=$repo/build-layer
out=${out:-$layer_dir/coldboot-layer-$arch.zip}
mkdir -p "$layer_dir"

# ---- what this script needs beyond scripts/deps.sh ----

apt_install() {
	local sudo=()
	[[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
	echo "layer: installing $*"
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }

missing=()
for pkg in patchelf binutils cmake pkg-config; do installed "$pkg" || missing+=("$pkg"); done
if ((cross)); then
	if ! dpkg --print-foreign-architectures | grep -qx arm64; then
		[[ $(id -u) -eq 0 ]] && dpkg --add-architecture arm64 || sudo -n dpkg --add-architecture arm64
	fi
	for pkg in gcc-aarch64-linux-gnu libcurl4-openssl-dev:arm64 libzip-dev:arm64 libxxhash-dev:arm64 \
		zlib1g-dev:arm64 libdeflate-dev:arm64; do
		installed "$pkg" || missing+=("$pkg")
	done
	((check)) && { installed qemu-user-static || missing+=(qemu-user-static); }
fi
((${#missing[@]} == 0)) || apt_install "${missing[@]}"

# ISA-L's packages are not Multi-Arch: installing the arm64 ones would remove the host's.
# They are downloaded and unpacked into a folder of their own instead.
isal_root=$layer_dir/isal-$arch
if ((cross)) && [[ ! -e $isal_root/usr/lib/$triplet/libisal.so.2 ]]; then
	rm -rf "$isal_root" "$layer_dir/debs-$arch"
	mkdir -p "$layer_dir/debs-$arch"
	(cd "$layer_dir/debs-$arch" && apt-get download -q "libisal2:$deb_arch" "libisal-dev:$deb_arch") \
		>/dev/null
	for deb in "$layer_dir/debs-$arch"/*.deb; do dpkg-deb -x "$deb" "$isal_root"; done
	sed -i "s|^prefix=.*|prefix=$isal_root/usr|" "$isal_root/usr/lib/$triplet/pkgconfig/libisal.pc"
fi

# ---- build ----

build() { # build DIR [cmake args...]
	local dir=$1
	shift
	cmake -S "$repo" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCOLDBOOT_TESTS=OFF "$@" >/dev/null
	cmake --build "$dir" -j"$(nproc)" --target coldboot coldboot-cold >/dev/null
}

# The host build packs the zip (coldboot pack: deterministic), whatever the target.
host_build=$layer_dir/host
build "$host_build"
tool_prefix=
if ((cross)); then
	tool_prefix=aarch64-linux-gnu-
	target_build=$layer_dir/$arch
	PKG_CONFIG_LIBDIR=/usr/lib/$triplet/pkgconfig:/usr/share/pkgconfig:$isal_root/usr/lib/$triplet/pkgconfig \
		build "$target_build" -DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR=aarch64 \
		-DCMAKE_C_COMPILER=aarch64-linux-gnu-gcc
else
	target_build=$host_build
fi
objdump=${tool_prefix}objdump
readelf=${tool_prefix}readelf
strip=${tool_prefix}strip

# ---- stage ----

stage=$layer_dir/stage-$arch
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/extensions" "$stage/lib/coldboot"
install -m 0755 "$target_build/coldboot" "$stage/bin/coldboot"
install -m 0755 "$target_build/coldboot-cold" "$stage/lib/coldboot/coldboot-cold"
"$strip" --strip-all "$stage/bin/coldboot" "$stage/lib/coldboot/coldboot-cold"
# The front must be static (COLDBOOT_STATIC_FRONT): nothing of the system, no interpreter.
if "$readelf" -l "$stage/bin/coldboot" | grep -q 'INTERP' ||
	[[ -n $("$objdump" -p "$stage/bin/coldboot" | awk '$1 == "NEEDED"') ]]; then
	echo "layer: bin/coldboot is not static; build with -DCOLDBOOT_STATIC_FRONT=ON" >&2
	exit 1
fi

# Every library coldboot-cold needs, found the way the loader would on Debian (multiarch folders).
search=("/lib/$triplet" "/usr/lib/$triplet" "$isal_root/usr/lib/$triplet")
needed_of() { "$objdump" -p "$1" | awk '$1 == "NEEDED" { print $2 }'; }
find_lib() {
	local d
	for d in "${search[@]}"; do
		[[ -e $d/$1 ]] && { echo "$d/$1"; return 0; }
	done
	return 1
}
queue=("$stage/lib/coldboot/coldboot-cold")
declare -A seen=()
while ((${#queue[@]} > 0)); do
	file=${queue[0]}
	queue=("${queue[@]:1}")
	while read -r name; do
		[[ -n $name && -z ${seen[$name]:-} ]] || continue
		seen[$name]=1
		path=$(find_lib "$name") || { echo "layer: cannot find $name (needed by $file)" >&2; exit 1; }
		cp -L "$path" "$stage/lib/coldboot/$name"
		chmod 0755 "$stage/lib/coldboot/$name"
		queue+=("$stage/lib/coldboot/$name")
	done < <(needed_of "$file")
done
loader_path=$(find_lib "$loader")
cp -L "$loader_path" "$stage/lib/coldboot/$loader"
chmod 0755 "$stage/lib/coldboot/$loader"

# Point the helper at the private loader and libraries. DT_RPATH (not RUNPATH) also covers
# the libraries' own dependencies and what they dlopen.
patchelf --set-interpreter "/opt/lib/coldboot/$loader" --force-rpath \
	--set-rpath '/opt/lib/coldboot:$ORIGIN' "$stage/lib/coldboot/coldboot-cold"
for lib in "$stage"/lib/coldboot/*.so*; do
	case $(basename "$lib") in
	coldboot-cold) continue ;;
	ld-linux-* | libc.so.* | libm.so.* | libpthread.so.* | libdl.so.* | librt.so.* | libresolv.so.*)
		continue ;; # glibc's own find each other; leave them untouched
	esac
	patchelf --force-rpath --set-rpath '$ORIGIN' "$lib"
done
install -m 0755 "$stage/bin/coldboot" "$stage/extensions/coldboot"
ln -s bin/coldboot "$stage/bootstrap"

# ---- zip ----

rm -f "$out"
"$host_build/coldboot" pack -o "$out" "$stage" >"$layer_dir/layer-$arch.lines" 2>/dev/null
checksum=$(sed -n 's/^COLDBOOT_CHECKSUM=//p' "$layer_dir/layer-$arch.lines")
size=$(stat -c %s "$out")
unpacked=$(du -sb "$stage" | cut -f1)
glibc_max() {
	"$objdump" -T "$1" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -t. -k1,1 -k2,2n -k3,3n -u | tail -1
}
echo "layer: $out ($arch): $size bytes, $unpacked bytes unpacked, $checksum"
echo "layer: bin/coldboot: static, $(stat -c %s "$stage/bin/coldboot") bytes"
echo "layer: lib/coldboot/coldboot-cold interpreter $("$readelf" -l "$stage/lib/coldboot/coldboot-cold" | sed -n 's/.*interpreter: \(.*\)]/\1/p'), needs up to $(glibc_max "$stage/lib/coldboot/coldboot-cold") (bundled: glibc $(dpkg-query -W -f='${Version}' "libc6:$deb_arch"))"
echo "layer: lib/coldboot: $(cd "$stage/lib/coldboot" && ls | tr '\n' ' ')"

# ---- check: nothing but the layer and the kernel ----

if ((check)); then
	root=$layer_dir/chroot-$arch
	chroot=$(PATH=$PATH:/usr/sbin:/sbin command -v chroot)
	rm -rf "$root"
	mkdir -p "$root/tmp" "$root/data"
	(cd "$root" && mkdir opt && cd opt && unzip -q "$out")
	# A small bundle to install, packed by the layer's own coldboot.
	mkdir -p "$root/data/src/bin" "$root/data/src/python/pkg"
	printf '#!/bin/sh\necho hi\n' >"$root/data/src/bin/hi"
	chmod 755 "$root/data/src/bin/hi"
	echo 'VALUE = 1' >"$root/data/src/python/pkg/__init__.py"
	# The chroot has no /proc, so the front cannot find the helper from /proc/self/exe: name it.
	# Under qemu-user the front's exec of the helper goes to the host kernel, which (without
	# binfmt_misc) cannot run an arm64 program: a host script runs it under qemu too.
	if ((cross)); then
		helper=$layer_dir/qemu-coldboot-cold
		printf '#!/bin/sh\nexec qemu-aarch64-static -L "%s" "%s/opt/lib/coldboot/coldboot-cold" "$@"\n' \
			"$root" "$root" >"$helper"
		chmod 0755 "$helper"
	fi
	run() {
		if ((cross)); then
			# qemu-user looks up absolute paths (the interpreter included) under the root first.
			env -i COLDBOOT_COLD_EXE="$helper" qemu-aarch64-static -L "$root" "$root$1" "${@:2}"
		else
			env -i COLDBOOT_COLD_EXE=/opt/lib/coldboot/coldboot-cold "$chroot" "$root" "$@"
		fi
	}
	at() { if ((cross)); then echo "$root$1"; else echo "$1"; fi; }
	run /opt/bin/coldboot --version
	sum=$(run /opt/bin/coldboot pack -o "$(at /data/b.zip)" "$(at /data/src)" 2>/dev/null |
		sed -n 's/^COLDBOOT_CHECKSUM=//p')
	[[ -n $sum ]] || { echo "layer: check: pack failed" >&2; exit 1; }
	for start in cold warm; do
		dir=$(run /opt/bin/coldboot ensure --url "file://$(at /data/b.zip)" --checksum "$sum" \
			--dir "$(at /tmp/cache)")
		[[ -x $(if ((cross)); then echo "$dir"; else echo "$root$dir"; fi)/bin/hi ]] || {
			echo "layer: check: $start ensure did not publish the bundle" >&2
			exit 1
		}
		echo "layer: check: $start ensure ok: $dir"
	done
	echo "layer: check passed: the layer runs with nothing but itself and the kernel"
fi
