#!/bin/sh
# make bench: prints figures (tools/bench.lua), as the test user when root.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tools/testenv.sh"
if [ "$(id -u)" -eq 0 ]; then
	prepare_test_user
	tree=$(stage_tree "$here")
	cp -r "$here/tools" "$tree/" && chown -R "$RLNS_TEST_USER:" "$tree/tools"
	trap 'rm -rf "$tree"' EXIT
	cd "$tree" && as_test_user lua5.4 tools/bench.lua "${ROUNDS:-30}"
else
	cd "$here" && lua5.4 tools/bench.lua "${ROUNDS:-30}"
fi
