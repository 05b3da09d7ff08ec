#!/bin/sh
# A handler wrapped by coldboot: shows what the bundle put in its environment.
#
#   coldboot --url URL --checksum SUM -- examples/handler.sh [STATUS]
#
# Exits with STATUS (default 0), so you can watch coldboot pass it through.
status=${1:-0}

echo "handler: COLDBOOT_BUNDLE=${COLDBOOT_BUNDLE:-<unset>}"
echo "handler: PATH starts with ${PATH%%:*}"
echo "handler: LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-<unset>}"

if command -v hello-dep >/dev/null 2>&1; then
	hello-dep
else
	echo "handler: hello-dep is not on PATH" >&2
	status=1
fi

# A published bundle is immutable: do not let Python write __pycache__ into it.
if command -v python3 >/dev/null 2>&1; then
	PYTHONDONTWRITEBYTECODE=1 python3 -c 'import cbdemo; print("handler: python says: " + cbdemo.greet("the shell handler"))' ||
		status=1
fi

if command -v node >/dev/null 2>&1; then
	node -e 'console.log("handler: node says: " + require("cbdemo").greet("the shell handler"))' ||
		status=1
fi

echo "handler: exiting with status $status"
exit "$status"
