#!/bin/sh
# Install the Debian packages the build, the specs, the linters, the
# reference, the bench and the demo need (iptables: netavark's firewall
# driver in the recipes spec; rootlesskit: the published-port peer in
# make bench).  As root: apt-get install what is missing.  Otherwise:
# print the exact command and fail, so nothing half-works.
set -eu

PACKAGES="gcc make pkg-config lua5.4 liblua5.4-dev libmount-dev lua-cjson lua-argparse
lua-busted lua-check slirp4netns passt uidmap iproute2 procps util-linux
valgrind cppcheck clang-tidy luarocks netcat-openbsd iperf3 groff-base nftables iputils-ping
podman catatonit lua-ldoc lua-discount netavark aardvark-dns containernetworking-plugins iptables
rootlesskit"

missing=""
for p in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
	echo "deps: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
	echo "deps: done"
else
	echo "deps: missing packages:$missing" >&2
	echo "deps: run as root:  apt-get update && apt-get install -y$missing" >&2
	exit 1
fi
