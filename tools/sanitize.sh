#!/bin/sh
# make sanitize: build the module with ASan+UBSan and run the primitive and
# policy specs with it (as the unprivileged test user when root).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tools/testenv.sh"
cd "$here"
make --no-print-directory -s BUILD=build-sanitize \
	CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	LDFLAGS="-fsanitize=address,undefined"
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
if [ "$(id -u)" -eq 0 ]; then
	prepare_test_user
	tree=$(stage_tree "$here")
	trap 'rm -rf "$tree"' EXIT
	cd "$tree" && as_test_user lua5.4 /usr/bin/busted --cpath='build-sanitize/?.so' spec/core spec/policy
else
	lua5.4 /usr/bin/busted --cpath='build-sanitize/?.so' spec/core spec/policy
fi
