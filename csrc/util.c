/*
 * util.c - the one result convention, EINTR-safe I/O, fault points and the
 * errno table exported to Lua (so policy code compares numbers, never text).
 */
/***
 * Errors and fault points.
 * @module rootlessnetns
 */

/***
 * Errors and fault points.
 * @section util
 */
#include "rlns.h"

#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/**
 * rlns_pushfail() - push the failure triple `nil, "<what>: <strerror>", errno`.
 * @err: the errno value, saved by the caller before any Lua API call.
 * Returns the number of pushed values, so bindings can `return rlns_pushfail(...)`.
 */
int
rlns_pushfail(lua_State *L, int err, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap); /* NOLINT(clang-analyzer-valist.Uninitialized): va_start above */
	va_end(ap);
	luaL_pushfail(L);
	if (what[0] != '\0')
		lua_pushfstring(L, "%s: %s", what, strerror(err));
	else
		lua_pushstring(L, strerror(err));
	lua_pushinteger(L, err);
	return 3;
}

int
rlns_pushtrue(lua_State *L)
{
	lua_pushboolean(L, 1);
	return 1;
}

/**
 * rlns_write_all() - write @len bytes, retrying on EINTR and short writes.
 * Async-signal-safe: used by forked children.
 */
ssize_t
rlns_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	size_t left = len;

	while (left > 0) {
		ssize_t n = write(fd, p, left);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		left -= (size_t)n;
	}
	return (ssize_t)len;
}

/**
 * rlns_read_full() - read until @len bytes or end of file.
 * Returns the number of bytes read (short only at EOF) or -1.
 */
ssize_t
rlns_read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/**
 * rlns_now_ms() - CLOCK_MONOTONIC in milliseconds, what deadlines are in.
 */
long long
rlns_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/**
 * rlns_poll_until() - wait for @events on @fd until the monotonic
 * @deadline (ms; negative: no deadline).  A signal does not restart the
 * whole wait: the next poll gets only the time left.
 * Returns 1 when ready, 0 when the deadline passed, -1 with errno.
 */
int
rlns_poll_until(int fd, short events, long long deadline)
{
	struct pollfd pfd = {.fd = fd, .events = events};
	int r;

	do {
		int ms = -1;

		if (deadline >= 0) {
			long long left = deadline - rlns_now_ms();

			ms = left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
		}
		r = poll(&pfd, 1, ms);
	} while (r < 0 && errno == EINTR);
	return r < 0 ? -1 : r > 0;
}

/**
 * rlns_report_send() - report @stage and @err to the parent over @fd.
 * Async-signal-safe: used by forked children between fork and exec.
 */
void
rlns_report_send(int fd, const char *stage, int err)
{
	struct rlns_report r = {.err = err};
	size_t i;

	for (i = 0; i < sizeof r.stage - 1 && stage[i]; i++)
		r.stage[i] = stage[i];
	rlns_write_all(fd, &r, sizeof r);
}

/**
 * rlns_report_read() - read one report from a child.
 * Returns 1 with *@r filled, 0 at end of file (the child exec'd, or died
 * before it could report), -1 with errno on a read error.
 */
int
rlns_report_read(int fd, struct rlns_report *r)
{
	ssize_t n = rlns_read_full(fd, r, sizeof *r);

	if (n < 0)
		return -1;
	if (n != (ssize_t)sizeof *r)
		return 0;
	r->stage[sizeof r->stage - 1] = '\0';
	return 1;
}

/**
 * rlns_fault_point() - die by SIGKILL when $ROOTLESSNETNS_FAULT names @point.
 * SIGKILL, not exit: the point of the exercise is that nothing gets a chance
 * to clean up, exactly as when the OOM killer or a user strikes.
 */
void
rlns_fault_point(const char *point)
{
	const char *want = getenv(RLNS_FAULT_ENV);

	if (want != NULL && strcmp(want, point) == 0)
		kill(getpid(), SIGKILL);
}

void
rlns_setintfield(lua_State *L, const char *key, lua_Integer value)
{
	lua_pushinteger(L, value);
	lua_setfield(L, -2, key);
}

/* Too many arguments is a programmer error, as in luaposix. */
void
rlns_checknargs(lua_State *L, int max)
{
	int n = lua_gettop(L);

	if (n > max)
		luaL_error(L, "too many arguments (%d expected, got %d)", max, n);
}

/* Flag arguments are integers built from the exported constants. */
int
rlns_checkflags(lua_State *L, int idx)
{
	lua_Integer v = luaL_checkinteger(L, idx);

	luaL_argcheck(L, v >= 0 && v <= 0x7fffffff, idx, "flags out of range");
	return (int)v;
}

/***
 * Die by SIGKILL here when the environment variable named by `FAULT_ENV`
 * (ROOTLESSNETNS_FAULT) names `point`; otherwise nothing.  The specs kill
 * a command at each point to prove that no crash leaves state the next
 * command cannot repair.
 * @function fault_point
 * @tparam string point
 */
static int
l_fault_point(lua_State *L)
{
	rlns_fault_point(luaL_checkstring(L, 1));
	return 0;
}

/***
 * The system's message for an errno value.
 * @function strerror
 * @tparam int errno
 * @treturn string
 */
static int
l_strerror(lua_State *L)
{
	lua_pushstring(L, strerror((int)luaL_checkinteger(L, 1)));
	return 1;
}

#define RLNS_ERRNO(name) {#name, name}
static const struct {
	const char *name;
	int value;
} errno_table[] = {
	RLNS_ERRNO(EPERM),   RLNS_ERRNO(ENOENT),  RLNS_ERRNO(ESRCH),   RLNS_ERRNO(EINTR),
	RLNS_ERRNO(EIO),     RLNS_ERRNO(E2BIG),   RLNS_ERRNO(ENOEXEC), RLNS_ERRNO(EBADF),
	RLNS_ERRNO(ECHILD),  RLNS_ERRNO(EAGAIN),  RLNS_ERRNO(ENOMEM),  RLNS_ERRNO(EACCES),
	RLNS_ERRNO(EBUSY),   RLNS_ERRNO(EEXIST),  RLNS_ERRNO(ENOTDIR), RLNS_ERRNO(EISDIR),
	RLNS_ERRNO(EINVAL),  RLNS_ERRNO(ENOSPC),  RLNS_ERRNO(EROFS),   RLNS_ERRNO(EMLINK),
	RLNS_ERRNO(EPIPE),   RLNS_ERRNO(ERANGE),  RLNS_ERRNO(ENAMETOOLONG),
	RLNS_ERRNO(ENOSYS),  RLNS_ERRNO(ENOTEMPTY), RLNS_ERRNO(ELOOP), RLNS_ERRNO(ENOTSUP),
	RLNS_ERRNO(ETIMEDOUT), RLNS_ERRNO(EWOULDBLOCK), RLNS_ERRNO(EUSERS),
	RLNS_ERRNO(EOVERFLOW), RLNS_ERRNO(ENODEV),  RLNS_ERRNO(ENXIO),
	RLNS_ERRNO(EADDRINUSE), RLNS_ERRNO(EADDRNOTAVAIL), RLNS_ERRNO(ECONNREFUSED),
	RLNS_ERRNO(ECONNRESET), RLNS_ERRNO(EMSGSIZE), RLNS_ERRNO(EMFILE),
	RLNS_ERRNO(EAFNOSUPPORT), RLNS_ERRNO(ENOTCONN),
};

static const luaL_Reg util_funcs[] = {
	{"fault_point", l_fault_point},
	{"strerror", l_strerror},
	{NULL, NULL},
};

void
rlns_open_util(lua_State *L)
{
	luaL_setfuncs(L, util_funcs, 0);
	lua_createtable(L, 0, (int)(sizeof errno_table / sizeof errno_table[0]));
	for (size_t i = 0; i < sizeof errno_table / sizeof errno_table[0]; i++)
		rlns_setintfield(L, errno_table[i].name, errno_table[i].value);
	lua_setfield(L, -2, "errno");
	lua_pushstring(L, RLNS_FAULT_ENV);
	lua_setfield(L, -2, "FAULT_ENV");
}
