#!/bin/sh
# make lint: luacheck, clang-tidy, cppcheck and gcc -fanalyzer over csrc/.
set -eu
cd "$(dirname "$0")/.."
CFLAGS_LINT="-D_GNU_SOURCE $(pkg-config --cflags lua5.4 mount)"
status=0

echo "lint: luacheck"
luacheck --quiet --std lua54 lua spec bin/rootlessnetns examples tools/bench.lua || status=1

echo "lint: clang-tidy"
# shellcheck disable=SC2086
clang-tidy --quiet csrc/*.c -- $CFLAGS_LINT 2>/dev/null || status=1

echo "lint: cppcheck"
# shellcheck disable=SC2086
cppcheck -q --enable=warning,performance,portability --std=c11 --inline-suppr \
	--suppress=missingIncludeSystem --error-exitcode=1 -D_GNU_SOURCE -Icsrc csrc/ || status=1

echo "lint: gcc -fanalyzer"
for f in csrc/*.c; do
	# shellcheck disable=SC2086
	gcc -std=gnu11 -fanalyzer -fsyntax-only -Wno-analyzer-possible-null-argument $CFLAGS_LINT "$f" || status=1
done

[ $status -eq 0 ] && echo "lint: clean"
exit $status
