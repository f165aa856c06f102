#!/bin/sh
# make bench: prints figures (tools/bench.lua), as the test user when root.
# The CLI measured is the one `make install` produces (absolute interpreter,
# precompiled modules), installed under a scratch prefix.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tools/testenv.sh"
prefix=$(mktemp -d /tmp/rootlessnetns-bench.XXXXXX)
trap 'rm -rf "$prefix" ${tree:+"$tree"}' EXIT
make -C "$here" --no-print-directory -s install PREFIX="$prefix" >/dev/null
chmod -R a+rX "$prefix"
if [ "$(id -u)" -eq 0 ]; then
	prepare_test_user
	tree=$(stage_tree "$here")
	cp -r "$here/tools" "$tree/" && chown -R "$RLNS_TEST_USER:" "$tree/tools"
	cd "$tree" && as_test_user lua5.4 tools/bench.lua "${ROUNDS:-30}" "$prefix/bin/rootlessnetns"
else
	cd "$here" && lua5.4 tools/bench.lua "${ROUNDS:-30}" "$prefix/bin/rootlessnetns"
fi
