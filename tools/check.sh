#!/bin/sh
# make check: luacheck, the API reference (make doc), every spec (namespace
# specs as an unprivileged user when run as root), the primitive specs again
# under ASan+UBSan and under valgrind, a luarocks install into a scratch
# tree and a `make install` into a scratch prefix.  Ends with the line
# `N passed, N failed`; exits non-zero when anything failed.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/tools/testenv.sh"
set +e
cd "$here"

passed=0
failed=0
log=$(mktemp)
tree=
# the staged copy goes too when the run is interrupted
trap 'rm -f "$log"; if [ -n "$tree" ] && [ "$tree" != "$here" ]; then rm -rf "$tree"; fi' EXIT

count_tap() {
	p=$(grep -c '^ok ' "$log" || true)
	f=$(grep -c '^not ok ' "$log" || true)
	passed=$((passed + p))
	failed=$((failed + f))
	echo "check: $1: $p passed, $f failed"
}

# step NAME CMD...: a step that is one test, judged by its exit status
step() {
	name=$1
	shift
	if "$@" >"$log" 2>&1; then
		passed=$((passed + 1))
		echo "check: $name: ok"
	else
		failed=$((failed + 1))
		echo "check: $name: FAILED"
		sed 's/^/  | /' "$log"
	fi
}

# suite NAME CMD...: a busted run in TAP form, each test counted
suite() {
	name=$1
	shift
	echo "check: $name"
	"$@" -o TAP >"$log" 2>&1
	grep -a -E -A6 "^not ok" "$log" | sed "s/^/  | /" | head -200
	if ! grep -qE '^1\.\.[0-9]+' "$log"; then
		failed=$((failed + 1))
		echo "check: $name: busted did not finish"
		tail -40 "$log" | sed 's/^/  | /'
	fi
	count_tap "$name"
}

step "luacheck" luacheck --quiet --std lua54 lua spec bin/rootlessnetns examples tools/bench.lua
step "C static analysis (clang-tidy, cppcheck, gcc -fanalyzer)" sh tools/lint.sh
step "bash completion parses" bash -n contrib/bash-completion/rootlessnetns
step "API reference (make doc: LDoc, no warnings)" sh tools/doc.sh

if [ "$(id -u)" -eq 0 ]; then
	prepare_test_user
	tree=$(stage_tree "$here")
	run() { (cd "$tree" && as_test_user "$@"); }
else
	tree=$here
	run() { (cd "$tree" && "$@"); }
fi

suite "specs" run lua5.4 /usr/bin/busted

make --no-print-directory -s BUILD=build-sanitize \
	CFLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	LDFLAGS="-fsanitize=address,undefined" >/dev/null
if [ "$tree" != "$here" ]; then
	rm -rf "$tree/build-sanitize" && cp -r build-sanitize "$tree/" && chown -R "$RLNS_TEST_USER:" "$tree/build-sanitize"
fi
(
	export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
	export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
	export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	suite "all specs under ASan+UBSan" run lua5.4 /usr/bin/busted --cpath='build-sanitize/?.so'
	echo "$passed $failed" >"$log.counts"
)
read -r passed failed <"$log.counts" && rm -f "$log.counts"

suite "all specs under valgrind" run valgrind -q --error-exitcode=99 --leak-check=full \
	--errors-for-leak-kinds=definite --child-silent-after-fork=yes --track-fds=yes \
	--suppressions=tools/valgrind.supp \
	--log-file=/tmp/rootlessnetns-valgrind.%p.log lua5.4 /usr/bin/busted
if grep -l 'ERROR SUMMARY: [1-9]' /tmp/rootlessnetns-valgrind.*.log >/dev/null 2>&1; then
	failed=$((failed + 1))
	echo "check: valgrind reported errors:"
	grep -a -h -B2 -A20 'Invalid\|definitely lost' /tmp/rootlessnetns-valgrind.*.log | head -60 | sed 's/^/  | /'
else
	passed=$((passed + 1))
	echo "check: valgrind: no memory errors, no definite leaks"
fi
rm -f /tmp/rootlessnetns-valgrind.*.log

rocktree=$(mktemp -d)
# The CLI must work from the tree with no LUA_PATH; the library through
# `luarocks path`, as LuaRocks users load it.
step "luarocks make into a scratch tree: CLI, --help of every command, man page, module" sh -c "
	luarocks --lua-version 5.4 --tree '$rocktree' make --deps-mode=none rockspec/rootlessnetns-scm-1.rockspec &&
	'$rocktree/bin/rootlessnetns' --version &&
	for c in '' run setup teardown info status cleanup doctor netns 'netns add' 'netns list' \
		'netns exec' 'netns del' 'netns connect' 'netns disconnect'; do
		'$rocktree/bin/rootlessnetns' \$c --help | grep -q '^Usage: rootlessnetns' || exit 1
	done &&
	page=\$(find '$rocktree' -name rootlessnetns.1) && test -n \"\$page\" &&
	MANWIDTH=80 nroff -man \"\$page\" | grep -q 'persistent rootless network namespace' &&
	eval \"\$(luarocks --lua-version 5.4 --tree '$rocktree' path)\" &&
	lua5.4 -e 'local c = require \"rootlessnetns\"; assert(c.netns_create and require(\"rootlessnetns.netns\").new and require(\"rootlessnetns.lab\").new)'"
rm -rf "$rocktree"

prefix=$(mktemp -d)
# What `make install` writes: a precompiled CLI behind its #! line (and
# with PRECOMPILE=no the source), finding its modules with no LUA_PATH.
step "make install into a scratch prefix, precompiled and not" sh -c "
	for pre in yes no; do
		make -s install PREFIX='$prefix'/\$pre PRECOMPILE=\$pre >/dev/null &&
		'$prefix'/\$pre/bin/rootlessnetns --version | grep -q '^rootlessnetns ' &&
		'$prefix'/\$pre/bin/rootlessnetns run --help | grep -q '^Usage: rootlessnetns run' || exit 1
	done &&
	head -n 1 '$prefix/yes/bin/rootlessnetns' | grep -q '^#!/' &&
	tail -n +2 '$prefix/yes/bin/rootlessnetns' | head -c 4 | grep -aq 'Lua' &&
	sed -n 2p '$prefix/no/bin/rootlessnetns' | grep -q '^-- rootlessnetns'"
rm -rf "$prefix"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
