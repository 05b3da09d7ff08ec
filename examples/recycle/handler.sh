#!/bin/sh
# The handler the recycle simulation wraps. Like a real one, it needs the
# bundle: `hello-dep` is only on PATH when coldboot has put the bundle's bin/
# there, so a start that did not get its bundle fails here.
out=$(hello-dep) || exit 1
case $out in
"hello-dep: running from $COLDBOOT_BUNDLE"/*) echo "handler: ok ($out)" ;;
*)
	echo "handler: hello-dep did not run from the bundle: $out" >&2
	exit 1
	;;
esac
