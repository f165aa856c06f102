#!/bin/sh
# make demo: run a command inside the rootless netns and show what it sees.
# As root, the demo runs as the unprivileged test user (see testenv.sh):
# the whole point is that no privileges are needed.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tools/testenv.sh"

inside='echo "== interfaces"; ip -br addr
echo "== routes"; ip route
echo "== /etc/resolv.conf"; cat /etc/resolv.conf
echo "== who am I inside"; id'

if [ "$(id -u)" -eq 0 ]; then
	prepare_test_user
	tree=$(stage_tree "$here")
	trap 'rm -rf "$tree"' EXIT
	echo "demo: running as the unprivileged user $RLNS_TEST_USER"
	echo "\$ rootlessnetns run -- sh -c '...'"
	(cd /tmp && as_test_user "$tree/bin/rootlessnetns" run -- sh -c "$inside")
else
	echo "\$ rootlessnetns run -- sh -c '...'"
	"$here/bin/rootlessnetns" run -- sh -c "$inside"
fi
