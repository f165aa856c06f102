#!/bin/sh
# make valgrind: the primitive specs under valgrind (memory errors, definite
# leaks, descriptors still open at exit), as the test user when root.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tools/testenv.sh"
cd "$here"
VG="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --child-silent-after-fork=yes --track-fds=yes --suppressions=tools/valgrind.supp"
if [ "$(id -u)" -eq 0 ]; then
	prepare_test_user
	tree=$(stage_tree "$here")
	trap 'rm -rf "$tree"' EXIT
	# shellcheck disable=SC2086
	cd "$tree" && as_test_user $VG lua5.4 /usr/bin/busted spec/core
else
	# shellcheck disable=SC2086
	$VG lua5.4 /usr/bin/busted spec/core
fi
