/*
 * sock.c - sockets for the forwarder's plumbing and its control channel:
 * SOCK_SEQPACKET pairs, unix sockets named relative to a directory fd (so
 * a long state path never meets sun_path's 108 bytes), accept with a
 * timeout, and plain TCP/UDP endpoints on numeric addresses (loopback
 * servers and clients for specs and benchmarks).
 */
/***
 * Sockets: SEQPACKET pairs, unix sockets below a directory, TCP/UDP endpoints.
 * @module rootlessnetns
 */

/***
 * Sockets: SEQPACKET pairs, unix sockets below a directory, TCP/UDP endpoints.
 * @section sock
 */
#include "rlns.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>
#include <arpa/inet.h>

/**
 * rlns_parse_addr() - a numeric IPv4 or IPv6 address (an IPv6 one may carry
 * a %zone) and @port into *@ss.  Returns 0, or -1 with EINVAL.
 */
int
rlns_parse_addr(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;

	if (port < 0 || port > 65535 || getaddrinfo(ip, NULL, &hints, &res) != 0 || res == NULL ||
	    res->ai_addrlen > sizeof *ss) {
		if (res)
			freeaddrinfo(res);
		errno = EINVAL;
		return -1;
	}
	memset(ss, 0, sizeof *ss);
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	return 0;
}

/**
 * rlns_format_addr() - the numeric text of @sa's address into @buf (no
 * brackets); its port into *@port when @port is not NULL.  Returns @buf
 * ("?" for a family that is neither IPv4 nor IPv6).
 */
const char *
rlns_format_addr(const struct sockaddr *sa, char *buf, size_t size, int *port)
{
	int p = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)size);
		p = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)size);
		p = ntohs(in6->sin6_port);
	} else {
		snprintf(buf, size, "?");
	}
	if (port)
		*port = p;
	return buf;
}

/* Push the address and port of @sa, or nothing for a unix socket. */
static int
push_addr(lua_State *L, const struct sockaddr_storage *ss)
{
	char text[RLNS_ADDRSTRLEN];
	int port;

	if (ss->ss_family != AF_INET && ss->ss_family != AF_INET6)
		return 0;
	lua_pushstring(L, rlns_format_addr((const struct sockaddr *)ss, text, sizeof text, &port));
	lua_pushinteger(L, port);
	return 2;
}

static int
wait_for(int fd, short events, lua_Integer timeout_ms)
{
	int r = rlns_poll_until(fd, events, timeout_ms < 0 ? -1 : rlns_now_ms() + timeout_ms);

	if (r == 0)
		errno = ETIMEDOUT;
	return r > 0 ? 0 : -1;
}

/***
 * A connected pair of close-on-exec SOCK_SEQPACKET unix sockets: each
 * write is one record, each read or recv one record.
 * @function socketpair
 * @treturn[1] Fd
 * @treturn[1] Fd
 * @return[2] nil, message, errno
 */
static int
l_socketpair(lua_State *L)
{
	int *a, *b;
	int fds[2];

	rlns_checknargs(L, 0);
	a = rlns_newfd(L);
	b = rlns_newfd(L);
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0)
		return rlns_pushfail(L, errno, "socketpair");
	*a = fds[0];
	*b = fds[1];
	return 2;
}

/*
 * The address of @name in the directory open as @dirfd, through
 * /proc/self/fd: the path stays short whatever the directory's.
 */
static int
unix_addr(lua_State *L, int dirfd, const char *name, struct sockaddr_un *sun)
{
	int n;

	if (strchr(name, '/') != NULL || name[0] == '\0')
		return luaL_argerror(L, 2, "a plain file name expected");
	memset(sun, 0, sizeof *sun);
	sun->sun_family = AF_UNIX;
	n = snprintf(sun->sun_path, sizeof sun->sun_path, "/proc/self/fd/%d/%s", dirfd, name);
	if (n < 0 || (size_t)n >= sizeof sun->sun_path)
		return luaL_argerror(L, 2, "name too long");
	return 0;
}

/***
 * Listen (SOCK_SEQPACKET, backlog 64) on the unix socket @name in the
 * directory @dir.  A stale socket file of that name is the caller's to
 * remove first.
 * @function unix_listen
 * @tparam Fd|int dir an open directory (mode "dir" or "path")
 * @tparam string name a file name in it
 * @treturn[1] Fd
 * @return[2] nil, message, errno (EADDRINUSE when the name exists)
 */
static int
l_unix_listen(lua_State *L)
{
	int dirfd = rlns_checkfd(L, 1);
	const char *name = luaL_checkstring(L, 2);
	struct sockaddr_un sun;
	int *fd;

	rlns_checknargs(L, 2);
	unix_addr(L, dirfd, name, &sun);
	fd = rlns_newfd(L);
	*fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (*fd < 0)
		return rlns_pushfail(L, errno, "socket");
	if (bind(*fd, (struct sockaddr *)&sun, sizeof sun) < 0 || listen(*fd, 64) < 0)
		return rlns_pushfail(L, errno, "listen on `%s`", name);
	return 1;
}

/***
 * Connect (SOCK_SEQPACKET) to the unix socket @name in the directory @dir.
 * @function unix_connect
 * @tparam Fd|int dir
 * @tparam string name
 * @treturn[1] Fd
 * @return[2] nil, message, errno (ECONNREFUSED: nobody listens;
 *   ENOENT: no such socket)
 */
static int
l_unix_connect(lua_State *L)
{
	int dirfd = rlns_checkfd(L, 1);
	const char *name = luaL_checkstring(L, 2);
	struct sockaddr_un sun;
	int *fd;

	rlns_checknargs(L, 2);
	unix_addr(L, dirfd, name, &sun);
	fd = rlns_newfd(L);
	*fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (*fd < 0)
		return rlns_pushfail(L, errno, "socket");
	if (TEMP_FAILURE_RETRY(connect(*fd, (struct sockaddr *)&sun, sizeof sun)) < 0)
		return rlns_pushfail(L, errno, "connect to `%s`", name);
	return 1;
}

/***
 * Accept one connection, waiting at most @timeout_ms (default: forever).
 * The new socket is close-on-exec and blocking.
 * @function accept
 * @tparam Fd|int fd a listening socket
 * @tparam[opt] int timeout_ms
 * @treturn[1] Fd
 * @treturn[1] string the peer's address (IPv4/IPv6 sockets only)
 * @treturn[1] int the peer's port (IPv4/IPv6 sockets only)
 * @return[2] nil, message, errno (ETIMEDOUT on timeout)
 */
static int
l_accept(lua_State *L)
{
	int lfd = rlns_checkfd(L, 1);
	lua_Integer timeout = luaL_optinteger(L, 2, -1);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	int *fd;

	rlns_checknargs(L, 2);
	fd = rlns_newfd(L);
	if (timeout >= 0 && wait_for(lfd, POLLIN, timeout) < 0)
		return rlns_pushfail(L, errno, "accept on fd %d", lfd);
	memset(&ss, 0, sizeof ss);
	*fd = TEMP_FAILURE_RETRY(accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC));
	if (*fd < 0)
		return rlns_pushfail(L, errno, "accept on fd %d", lfd);
	return 1 + push_addr(L, &ss);
}

static const char *const protos[] = {"tcp", "udp", NULL};

static int
checkaddr(lua_State *L, int ip_idx, int port_idx, struct sockaddr_storage *ss, socklen_t *len)
{
	const char *ip = luaL_checkstring(L, ip_idx);
	lua_Integer port = luaL_optinteger(L, port_idx, 0);

	memset(ss, 0, sizeof *ss);
	*len = 0;
	luaL_argcheck(L, port >= 0 && port <= 65535, port_idx, "port out of range");
	if (rlns_parse_addr(ip, (int)port, ss, len) < 0)
		return luaL_argerror(L, ip_idx, lua_pushfstring(L, "invalid address `%s`", ip));
	return 0;
}

/***
 * A TCP socket listening (backlog 128, SO_REUSEADDR) or a UDP socket bound
 * on a numeric address; port 0 lets the kernel choose.  An IPv6 address
 * is IPv6 only.
 * @function inet_listen
 * @tparam string proto "tcp" or "udp"
 * @tparam string ip
 * @tparam[opt=0] int port
 * @treturn[1] Fd
 * @treturn[1] int the bound port
 * @return[2] nil, message, errno (EADDRINUSE, EACCES...)
 */
static int
l_inet_listen(lua_State *L)
{
	int udp = luaL_checkoption(L, 1, NULL, protos);
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1, port, *fd;
	char text[RLNS_ADDRSTRLEN];

	rlns_checknargs(L, 3);
	checkaddr(L, 2, 3, &ss, &len);
	fd = rlns_newfd(L);
	*fd = socket(ss.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
	if (*fd < 0)
		return rlns_pushfail(L, errno, "socket");
	if (ss.ss_family == AF_INET6)
		(void)setsockopt(*fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (!udp)
		(void)setsockopt(*fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(*fd, (struct sockaddr *)&ss, len) < 0 || (!udp && listen(*fd, 128) < 0))
		return rlns_pushfail(L, errno, "bind %s", lua_tostring(L, 2));
	len = sizeof ss;
	if (getsockname(*fd, (struct sockaddr *)&ss, &len) < 0)
		return rlns_pushfail(L, errno, "getsockname");
	rlns_format_addr((struct sockaddr *)&ss, text, sizeof text, &port);
	lua_pushinteger(L, port);
	return 2;
}

/***
 * A TCP socket connected (blocking) to @ip:@port, or a UDP socket
 * connected to it; bound to @src_ip (port @src_port, default any) first
 * when given.
 * @function inet_connect
 * @tparam string proto "tcp" or "udp"
 * @tparam string ip
 * @tparam int port
 * @tparam[opt] string src_ip
 * @tparam[opt] int src_port
 * @treturn[1] Fd
 * @return[2] nil, message, errno (ECONNREFUSED...)
 */
static int
l_inet_connect(lua_State *L)
{
	int udp = luaL_checkoption(L, 1, NULL, protos);
	struct sockaddr_storage ss, src;
	socklen_t len, srclen = 0;
	int *fd;

	rlns_checknargs(L, 5);
	checkaddr(L, 2, 3, &ss, &len);
	if (!lua_isnoneornil(L, 4))
		checkaddr(L, 4, 5, &src, &srclen);
	fd = rlns_newfd(L);
	*fd = socket(ss.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
	if (*fd < 0)
		return rlns_pushfail(L, errno, "socket");
	if (srclen && bind(*fd, (struct sockaddr *)&src, srclen) < 0)
		return rlns_pushfail(L, errno, "bind %s", lua_tostring(L, 4));
	if (TEMP_FAILURE_RETRY(connect(*fd, (struct sockaddr *)&ss, len)) < 0)
		return rlns_pushfail(L, errno, "connect to %s port %d", lua_tostring(L, 2),
				     (int)lua_tointeger(L, 3));
	return 1;
}

/***
 * The local address of a socket.
 * @function getsockname
 * @tparam Fd|int fd
 * @treturn[1] string address
 * @treturn[1] int port
 * @return[2] nil, message, errno
 */
static int
l_getsockname(lua_State *L)
{
	int fd = rlns_checkfd(L, 1);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	rlns_checknargs(L, 1);
	memset(&ss, 0, sizeof ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return rlns_pushfail(L, errno, "getsockname fd %d", fd);
	if (push_addr(L, &ss) == 0)
		return rlns_pushfail(L, EAFNOSUPPORT, "getsockname fd %d", fd);
	return 2;
}

/***
 * Send one datagram to @ip:@port.
 * @function sendto
 * @tparam Fd|int fd
 * @tparam string data
 * @tparam string ip
 * @tparam int port
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int
l_sendto(lua_State *L)
{
	int fd = rlns_checkfd(L, 1);
	size_t n;
	const char *data = luaL_checklstring(L, 2, &n);
	struct sockaddr_storage ss;
	socklen_t len;

	rlns_checknargs(L, 4);
	checkaddr(L, 3, 4, &ss, &len);
	if (TEMP_FAILURE_RETRY(sendto(fd, data, n, MSG_NOSIGNAL, (struct sockaddr *)&ss, len)) < 0)
		return rlns_pushfail(L, errno, "sendto %s", lua_tostring(L, 3));
	return rlns_pushtrue(L);
}

/***
 * Receive one datagram (at most 64 KiB), waiting at most @timeout_ms
 * (default: forever).
 * @function recvfrom
 * @tparam Fd|int fd
 * @tparam[opt] int timeout_ms
 * @treturn[1] string data
 * @treturn[1] string the sender's address
 * @treturn[1] int the sender's port
 * @return[2] nil, message, errno (ETIMEDOUT on timeout)
 */
static int
l_recvfrom(lua_State *L)
{
	int fd = rlns_checkfd(L, 1);
	lua_Integer timeout = luaL_optinteger(L, 2, -1);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	luaL_Buffer b;
	char *buf;
	ssize_t n;

	rlns_checknargs(L, 2);
	if (timeout >= 0 && wait_for(fd, POLLIN, timeout) < 0)
		return rlns_pushfail(L, errno, "recvfrom fd %d", fd);
	memset(&ss, 0, sizeof ss);
	buf = luaL_buffinitsize(L, &b, 65536);
	n = TEMP_FAILURE_RETRY(recvfrom(fd, buf, 65536, 0, (struct sockaddr *)&ss, &len));
	if (n < 0)
		return rlns_pushfail(L, errno, "recvfrom fd %d", fd);
	luaL_pushresultsize(&b, (size_t)n);
	return 1 + push_addr(L, &ss);
}

static const luaL_Reg sock_funcs[] = {
	{"socketpair", l_socketpair},
	{"unix_listen", l_unix_listen},
	{"unix_connect", l_unix_connect},
	{"accept", l_accept},
	{"inet_listen", l_inet_listen},
	{"inet_connect", l_inet_connect},
	{"getsockname", l_getsockname},
	{"sendto", l_sendto},
	{"recvfrom", l_recvfrom},
	{NULL, NULL},
};

void
rlns_open_sock(lua_State *L)
{
	luaL_setfuncs(L, sock_funcs, 0);
}
