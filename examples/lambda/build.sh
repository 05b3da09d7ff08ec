#!/usr/bin/env bash
# Packs the three example bundles with `coldboot pack` into build-examples/lambda/ (or $OUT) and
# prints, for each, the two lines to paste into the function's settings (lambda.env, or
# template.yaml's parameters); BUCKET=my-bucket puts your bucket's name in the URL lines.
# The C handler is compiled first, statically, into a copy of its bundle folder, so that nothing
# generated lands in the source tree.
#
#   COLDBOOT=path/to/coldboot bash examples/lambda/build.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
coldboot=${COLDBOOT:-coldboot}
out=${OUT:-$(cd "$here/../.." && pwd)/build-examples/lambda} # build*/ is git-ignored
cc=${CC:-cc}

mkdir -p "$out"
rm -rf "$out/c-bundle"
cp -R "$here/c/bundle" "$out/c-bundle"
mkdir -p "$out/c-bundle/bin"
# Static, so the same file runs on Amazon Linux 2 (glibc 2.26) and 2023 (glibc 2.34).
if ! "$cc" -static -O2 -o "$out/c-bundle/bin/handler" "$here/c/handler.c" 2>/dev/null; then
	echo "build: no static libc here; building a dynamic handler (fine on a matching glibc)" >&2
	"$cc" -O2 -o "$out/c-bundle/bin/handler" "$here/c/handler.c"
fi

for lang in python node c; do
	src=$here/$lang/bundle
	[[ $lang == c ]] && src=$out/c-bundle
	echo "# $lang: upload $out/$lang-deps.zip, then set"
	"$coldboot" pack -o "$out/$lang-deps.zip" "$src" | sed "s|s3://YOUR-BUCKET/|s3://${BUCKET:-YOUR-BUCKET}/|"
done
