/*
 * ns.c - namespaces: unshare, setns, namespace fds and identity, nsfs checks.
 */
/***
 * Namespaces and interfaces.
 * @module rootlessnetns
 */

/***
 * Namespaces and interfaces.
 * @section ns
 */
#include "rlns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif
#ifndef PROC_SUPER_MAGIC
#define PROC_SUPER_MAGIC 0x9fa0
#endif

/***
 * unshare(2).
 * @function unshare
 * @tparam int flags CLONE_NEW* constants or'ed together
 * @treturn[1] true
 * @return[2] nil
 * @treturn[2] string message
 * @treturn[2] int errno
 */
static int
l_unshare(lua_State *L)
{
	int flags = rlns_checkflags(L, 1);

	rlns_checknargs(L, 1);
	if (unshare(flags) < 0)
		return rlns_pushfail(L, errno, "unshare 0x%x", (unsigned)flags);
	return rlns_pushtrue(L);
}

/***
 * setns(2) by descriptor (a namespace fd or a pidfd) or by path.
 * @function setns
 * @tparam Fd|int|string target
 * @tparam[opt=0] int nstype CLONE_NEW* of the namespace (0: any)
 */
static int
l_setns(lua_State *L)
{
	int nstype = (int)luaL_optinteger(L, 2, 0);
	cleanup_close int own = -1;
	const char *what;
	int fd;

	rlns_checknargs(L, 2);
	if (lua_type(L, 1) == LUA_TSTRING) {
		what = lua_tostring(L, 1);
		own = open(what, O_RDONLY | O_CLOEXEC);
		if (own < 0)
			return rlns_pushfail(L, errno, "open `%s`", what);
		fd = own;
	} else {
		fd = rlns_checkfd(L, 1);
		what = "fd";
	}
	if (setns(fd, nstype) < 0)
		return rlns_pushfail(L, errno, "setns `%s`", what);
	return rlns_pushtrue(L);
}

/***
 * Open /proc/<pid>/ns/<name> (pid 0: this process).
 * @function ns_open
 * @treturn[1] Fd
 */
static int
l_ns_open(lua_State *L)
{
	lua_Integer pid = luaL_checkinteger(L, 1);
	const char *name = luaL_checkstring(L, 2);
	char path[64];
	int *fd;

	rlns_checknargs(L, 2);
	luaL_argcheck(L, pid >= 0 && pid <= 0x7fffffff, 1, "invalid pid");
	if (pid == 0)
		snprintf(path, sizeof path, "/proc/self/ns/%.16s", name);
	else
		snprintf(path, sizeof path, "/proc/%d/ns/%.16s", (int)pid, name);
	fd = rlns_newfd(L);
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return rlns_pushfail(L, errno, "open `%s`", path);
	return 1;
}

/***
 * Identity of a namespace: its nsfs inode number, comparable across
 * processes (two fds or paths name the same namespace when equal).
 * @function ns_id
 * @tparam Fd|int|string ns
 * @treturn[1] int inode
 */
static int
l_ns_id(lua_State *L)
{
	struct stat st;
	int r;

	rlns_checknargs(L, 1);
	if (lua_type(L, 1) == LUA_TSTRING)
		r = stat(lua_tostring(L, 1), &st);
	else
		r = fstat(rlns_checkfd(L, 1), &st);
	if (r < 0)
		return rlns_pushfail(L, errno, "stat `%s`",
				     lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : "fd");
	lua_pushinteger(L, (lua_Integer)st.st_ino);
	return 1;
}

/***
 * Is @path a live namespace (an nsfs bind mount or a /proc ns file)?
 * A plain file left behind by a crash or a dead holder answers false.
 * @function nsfs
 * @treturn[1] boolean
 * @return[2] nil, message, errno (e.g. ENOENT)
 */
static int
l_nsfs(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct statfs sfs;

	rlns_checknargs(L, 1);
	if (statfs(path, &sfs) < 0)
		return rlns_pushfail(L, errno, "statfs `%s`", path);
	lua_pushboolean(L, sfs.f_type == NSFS_MAGIC || sfs.f_type == PROC_SUPER_MAGIC);
	return 1;
}

static int
prefixlen(const struct sockaddr *mask)
{
	const unsigned char *b;
	size_t n;
	int bits = 0;

	if (mask == NULL)
		return 0;
	if (mask->sa_family == AF_INET) {
		b = (const unsigned char *)&((const struct sockaddr_in *)(const void *)mask)->sin_addr;
		n = 4;
	} else {
		b = (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)mask)->sin6_addr;
		n = 16;
	}
	for (size_t i = 0; i < n; i++)
		bits += __builtin_popcount(b[i]);
	return bits;
}

/***
 * Addresses of this process's network namespace (getifaddrs).
 * @function getifaddrs
 * @treturn[1] table list of {name, family ("inet"/"inet6"), address,
 *   prefixlen, up, loopback, linklocal}
 */
static int
l_getifaddrs(lua_State *L)
{
	struct ifaddrs *ifa, *it;
	int i = 0;

	rlns_checknargs(L, 0);
	if (getifaddrs(&ifa) < 0)
		return rlns_pushfail(L, errno, "getifaddrs");
	lua_newtable(L);
	for (it = ifa; it; it = it->ifa_next) {
		char addr[INET6_ADDRSTRLEN];
		int family = it->ifa_addr ? it->ifa_addr->sa_family : AF_UNSPEC;
		int linklocal = 0;

		if (family == AF_INET) {
			const struct in_addr *a =
				&((const struct sockaddr_in *)(const void *)it->ifa_addr)->sin_addr;
			inet_ntop(AF_INET, a, addr, sizeof addr);
			linklocal = (ntohl(a->s_addr) >> 16) == 0xa9fe;
		} else if (family == AF_INET6) {
			const struct in6_addr *a =
				&((const struct sockaddr_in6 *)(const void *)it->ifa_addr)->sin6_addr;
			inet_ntop(AF_INET6, a, addr, sizeof addr);
			linklocal = IN6_IS_ADDR_LINKLOCAL(a);
		} else {
			continue;
		}
		lua_createtable(L, 0, 7);
		lua_pushstring(L, it->ifa_name);
		lua_setfield(L, -2, "name");
		lua_pushstring(L, family == AF_INET ? "inet" : "inet6");
		lua_setfield(L, -2, "family");
		lua_pushstring(L, addr);
		lua_setfield(L, -2, "address");
		rlns_setintfield(L, "prefixlen", prefixlen(it->ifa_netmask));
		lua_pushboolean(L, (it->ifa_flags & IFF_UP) != 0);
		lua_setfield(L, -2, "up");
		lua_pushboolean(L, (it->ifa_flags & IFF_LOOPBACK) != 0);
		lua_setfield(L, -2, "loopback");
		lua_pushboolean(L, linklocal);
		lua_setfield(L, -2, "linklocal");
		lua_seti(L, -2, ++i);
	}
	freeifaddrs(ifa);
	return 1;
}

/***
 * Index of the network interface @name in this process's network
 * namespace.
 * @function if_index
 * @tparam string name
 * @treturn[1] int index
 * @return[2] nil, message, errno (ENODEV when there is none)
 */
static int
l_if_index(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	unsigned idx;

	rlns_checknargs(L, 1);
	idx = if_nametoindex(name);
	if (idx == 0)
		return rlns_pushfail(L, errno, "interface `%s`", name);
	lua_pushinteger(L, idx);
	return 1;
}

/***
 * Bring the interface @name up (IFF_UP) in this process's network
 * namespace, as `ip link set NAME up` does; a fresh namespace's loopback
 * starts down.
 * @function link_up
 * @tparam string name
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int
l_link_up(lua_State *L)
{
	size_t len;
	const char *name = luaL_checklstring(L, 1, &len);
	cleanup_close int sock = -1;
	struct ifreq ifr = {0};

	rlns_checknargs(L, 1);
	if (len == 0 || len >= sizeof ifr.ifr_name)
		return luaL_argerror(L, 1, "invalid interface name");
	memcpy(ifr.ifr_name, name, len);
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return rlns_pushfail(L, errno, "socket");
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		return rlns_pushfail(L, errno, "interface `%s`", name);
	if (ifr.ifr_flags & IFF_UP)
		return rlns_pushtrue(L);
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
		return rlns_pushfail(L, errno, "bring `%s` up", name);
	return rlns_pushtrue(L);
}

static const luaL_Reg ns_funcs[] = {
	{"getifaddrs", l_getifaddrs},
	{"if_index", l_if_index},
	{"link_up", l_link_up},
	{"unshare", l_unshare},
	{"setns", l_setns},
	{"ns_open", l_ns_open},
	{"ns_id", l_ns_id},
	{"nsfs", l_nsfs},
	{NULL, NULL},
};

#define RLNS_CONST(name) {#name, name}
static const struct {
	const char *name;
	lua_Integer value;
} ns_consts[] = {
	RLNS_CONST(CLONE_NEWNET), RLNS_CONST(CLONE_NEWNS),     RLNS_CONST(CLONE_NEWUSER),
	RLNS_CONST(CLONE_NEWUTS), RLNS_CONST(CLONE_NEWIPC),    RLNS_CONST(CLONE_NEWPID),
#ifdef CLONE_NEWCGROUP
	RLNS_CONST(CLONE_NEWCGROUP),
#endif
};

void
rlns_open_ns(lua_State *L)
{
	luaL_setfuncs(L, ns_funcs, 0);
	for (size_t i = 0; i < sizeof ns_consts / sizeof ns_consts[0]; i++)
		rlns_setintfield(L, ns_consts[i].name, ns_consts[i].value);
}
