#!/bin/sh
# Shared by check.sh, sanitize.sh, valgrind.sh and demo.sh: prepare an
# unprivileged user to run namespace work as, when we are root.
#
#   RLNS_TEST_USER   the user (default rlnstest), created when missing with
#                    subordinate uid/gid ranges
#   stage_tree DIR   copies the tree's runnable parts into a fresh directory
#                    the test user can read, prints its path
#   as_test_user CMD runs CMD as that user with a clean environment
set -eu

RLNS_TEST_USER=${RLNS_TEST_USER:-rlnstest}

prepare_test_user() {
	if ! id "$RLNS_TEST_USER" >/dev/null 2>&1; then
		echo "testenv: creating unprivileged user $RLNS_TEST_USER for the namespace specs"
		useradd --create-home --shell /bin/sh "$RLNS_TEST_USER"
	fi
	if ! grep -q "^$RLNS_TEST_USER:" /etc/subuid 2>/dev/null; then
		usermod --add-subuids 200000-265535 "$RLNS_TEST_USER"
	fi
	if ! grep -q "^$RLNS_TEST_USER:" /etc/subgid 2>/dev/null; then
		usermod --add-subgids 200000-265535 "$RLNS_TEST_USER"
	fi
	# What pam_systemd gives a logged-in user: /run/user/<uid>, 0700, a
	# tmpfs of its own (logind's RuntimeDirectorySize=10%).  Where /run is
	# on disk, as on some CI machines, every run reference would be an
	# ext4 create and rename: a third of a millisecond on each warm run
	# that no real session pays.  Where mounting is not allowed, the
	# directory is used as it is.
	uid=$(id -u "$RLNS_TEST_USER")
	mkdir -p "/run/user/$uid"
	if ! mountpoint -q "/run/user/$uid" && [ "$(stat -f -c %T /run)" != tmpfs ]; then
		mount -t tmpfs -o "mode=0700,uid=$uid,gid=$(id -g "$RLNS_TEST_USER"),size=10%,nosuid,nodev" \
			tmpfs "/run/user/$uid" 2>/dev/null ||
			echo "testenv: /run/user/$uid is on $(stat -f -c %T "/run/user/$uid"), not a tmpfs (mounting one was refused)"
	fi
	chown "$RLNS_TEST_USER:" "/run/user/$uid"
	chmod 0700 "/run/user/$uid"
	if [ -c /dev/net/tun ] && ! su -s /bin/sh "$RLNS_TEST_USER" -c 'test -r /dev/net/tun -a -w /dev/net/tun'; then
		echo "testenv: /dev/net/tun is $(stat -c %a /dev/net/tun) here; granting access with chmod 0666 (the mode ordinary distributions ship) so $RLNS_TEST_USER can use pasta and slirp4netns"
		chmod 0666 /dev/net/tun
	fi
}

# stage_tree SRC: copy the runnable tree for the test user; print the copy.
stage_tree() {
	dest=$(mktemp -d /tmp/rootlessnetns-check.XXXXXX)
	cp -r "$1/bin" "$1/lua" "$1/spec" "$1/build" "$1/.busted" "$1/rockspec" "$1/csrc" "$1/contrib" "$dest/"
	[ -d "$1/examples" ] && cp -r "$1/examples" "$dest/"
	# the README (its transcripts are run by spec/userns/readme_spec.lua), the
	# CHANGELOG (spec/policy/packaging_spec.lua checks its version),
	# the topic pages (spec/policy/doc_spec.lua checks them) and the man page
	cp "$1/README.md" "$1/CHANGELOG.md" "$dest/"
	cp -r "$1/docs" "$1/doc" "$dest/"
	mkdir -p "$dest/tools" && cp "$1/tools/valgrind.supp" "$dest/tools/"
	[ -d "$1/build-sanitize" ] && cp -r "$1/build-sanitize" "$dest/"
	chown -R "$RLNS_TEST_USER:" "$dest"
	chmod 0755 "$dest"
	echo "$dest"
}

as_test_user() {
	home=$(getent passwd "$RLNS_TEST_USER" | cut -d: -f6)
	setpriv --reuid "$RLNS_TEST_USER" --regid "$RLNS_TEST_USER" --init-groups \
		env -i HOME="$home" USER="$RLNS_TEST_USER" LOGNAME="$RLNS_TEST_USER" \
		PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin SHELL=/bin/sh LANG=C.UTF-8 \
		XDG_RUNTIME_DIR="/run/user/$(id -u "$RLNS_TEST_USER")" \
		${LD_PRELOAD:+LD_PRELOAD="$LD_PRELOAD"} ${ASAN_OPTIONS:+ASAN_OPTIONS="$ASAN_OPTIONS"} \
		${UBSAN_OPTIONS:+UBSAN_OPTIONS="$UBSAN_OPTIONS"} ${RLNS_CPATH:+RLNS_CPATH="$RLNS_CPATH"} \
		"$@"
}
