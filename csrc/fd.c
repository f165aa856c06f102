/*
 * fd.c - the Fd object: one owned, close-on-exec descriptor.
 *
 * Modelled on liolib's LStream: the userdata is created closed before the
 * syscall that opens the descriptor, so a memory error cannot leak it;
 * __gc and __close are the same idempotent function.
 */
/***
 * Descriptors: the Fd object and reads and writes with timeouts.
 * @module rootlessnetns
 */

/***
 * Descriptors: the Fd object and reads and writes with timeouts.
 * @section fd
 */
#include "rlns.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

typedef struct {
	int fd;
} rlns_Fd;

/**
 * rlns_newfd() - push a closed Fd userdata; the caller stores the fd in it.
 */
int *
rlns_newfd(lua_State *L)
{
	rlns_Fd *p = lua_newuserdatauv(L, sizeof *p, 0);

	p->fd = -1;
	luaL_setmetatable(L, RLNS_FD_META);
	return &p->fd;
}

static rlns_Fd *
tofd(lua_State *L, int idx)
{
	rlns_Fd *p = luaL_checkudata(L, idx, RLNS_FD_META);

	if (p->fd < 0)
		luaL_error(L, "attempt to use a closed fd");
	return p;
}

int
rlns_isfd(lua_State *L, int idx)
{
	return luaL_testudata(L, idx, RLNS_FD_META) != NULL;
}

/**
 * rlns_checkfd() - a descriptor argument: an open Fd object or an integer.
 */
int
rlns_checkfd(lua_State *L, int idx)
{
	lua_Integer fd;

	if (rlns_isfd(L, idx))
		return tofd(L, idx)->fd;
	fd = luaL_checkinteger(L, idx);
	luaL_argcheck(L, fd >= 0 && fd <= 0x7fffffff, idx, "invalid file descriptor");
	return (int)fd;
}

static int
fd_gc(lua_State *L)
{
	rlns_Fd *p = luaL_checkudata(L, 1, RLNS_FD_META);

	rlns_closep(&p->fd);
	return 0;
}

static int
fd_close(lua_State *L)
{
	rlns_Fd *p = tofd(L, 1);
	int fd = steal_fd(&p->fd);

	/* After close(2) the descriptor is gone even on EINTR (Linux). */
	if (close(fd) < 0 && errno != EINTR)
		return rlns_pushfail(L, errno, "close fd %d", fd);
	return rlns_pushtrue(L);
}

static int
fd_fileno(lua_State *L)
{
	lua_pushinteger(L, tofd(L, 1)->fd);
	return 1;
}

static int
fd_tostring(lua_State *L)
{
	rlns_Fd *p = luaL_checkudata(L, 1, RLNS_FD_META);

	if (p->fd < 0)
		lua_pushliteral(L, "Fd (closed)");
	else
		lua_pushfstring(L, "Fd (%d)", p->fd);
	return 1;
}

/* Push the failure of rlns_poll_until() (r = 0: ETIMEDOUT). */
static int
push_wait_failure(lua_State *L, int r, int fd)
{
	if (r < 0)
		return rlns_pushfail(L, errno, "poll fd %d", fd);
	return rlns_pushfail(L, ETIMEDOUT, "read fd %d", fd);
}

/***
 * Read up to `max` bytes, waiting at most `timeout_ms` (default: forever).
 * @function read
 * @treturn[1] string the bytes ("" at end of file)
 * @return[2] nil
 * @treturn[2] string message ("read fd N: Connection timed out" on timeout)
 * @treturn[2] int errno (ETIMEDOUT on timeout)
 */
static int
l_read(lua_State *L)
{
	int fd = rlns_checkfd(L, 1);
	lua_Integer max = luaL_optinteger(L, 2, 65536);
	lua_Integer timeout = luaL_optinteger(L, 3, -1);
	luaL_Buffer b;
	char *buf;
	ssize_t n;

	luaL_argcheck(L, max > 0 && max <= (1 << 24), 2, "size out of range");
	if (timeout >= 0) {
		int r = rlns_poll_until(fd, POLLIN, rlns_now_ms() + timeout);

		if (r <= 0)
			return push_wait_failure(L, r, fd);
	}
	buf = luaL_buffinitsize(L, &b, (size_t)max);
	n = TEMP_FAILURE_RETRY(read(fd, buf, (size_t)max));
	if (n < 0)
		return rlns_pushfail(L, errno, "read fd %d", fd);
	luaL_pushresultsize(&b, (size_t)n);
	return 1;
}

/***
 * Read until end of file (a pipe's writer closed), with an optional timeout.
 * @function readall
 */
static int
l_readall(lua_State *L)
{
	int fd = rlns_checkfd(L, 1);
	lua_Integer timeout = luaL_optinteger(L, 2, -1);
	long long deadline = timeout >= 0 ? rlns_now_ms() + timeout : -1;
	luaL_Buffer b;

	luaL_buffinit(L, &b);
	for (;;) {
		char chunk[4096];
		ssize_t n;

		if (timeout >= 0) {
			int r = rlns_poll_until(fd, POLLIN, deadline);

			if (r <= 0)
				return push_wait_failure(L, r, fd);
		}
		n = TEMP_FAILURE_RETRY(read(fd, chunk, sizeof chunk));
		if (n < 0)
			return rlns_pushfail(L, errno, "read fd %d", fd);
		if (n == 0)
			break;
		luaL_addlstring(&b, chunk, (size_t)n);
	}
	luaL_pushresult(&b);
	return 1;
}

/*
 * rlns_write_all() without SIGPIPE: a pipe whose reader is gone is EPIPE
 * here, never the death of the caller (a command's child that failed
 * before it read the word its parent sends).  SIGPIPE is blocked around
 * the write and one it raised is taken back; the caller's mask and
 * dispositions are as they were.
 */
static ssize_t
write_all_nosigpipe(int fd, const void *buf, size_t len)
{
	sigset_t pipe_set, old, pending;
	ssize_t r;
	int err, was_pending;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE);
	sigprocmask(SIG_BLOCK, &pipe_set, &old);
	r = rlns_write_all(fd, buf, len);
	err = errno;
	if (r < 0 && err == EPIPE && !was_pending) {
		static const struct timespec now = {0, 0};

		while (sigtimedwait(&pipe_set, NULL, &now) < 0 && errno == EINTR)
			;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	errno = err;
	return r;
}

/***
 * Write a whole string (EPIPE, not SIGPIPE, when the reader is gone).
 * @function write
 */
static int
l_write(lua_State *L)
{
	int fd = rlns_checkfd(L, 1);
	size_t len;
	const char *s = luaL_checklstring(L, 2, &len);

	if (write_all_nosigpipe(fd, s, len) < 0)
		return rlns_pushfail(L, errno, "write fd %d", fd);
	return rlns_pushtrue(L);
}

/***
 * Receive one record of a SOCK_SEQPACKET (or one datagram) socket,
 * waiting at most `timeout_ms` (default: forever).  A record longer than
 * 64 KiB is EMSGSIZE (its rest is lost), never silently cut.
 * @function Fd:recv
 * @tparam[opt] int timeout_ms
 * @treturn[1] string the record
 * @return[2] nil at end of file (the peer closed; an empty record reads
 *   the same, so protocols never send one)
 * @return[3] nil, message, errno (ETIMEDOUT on timeout)
 */
static int
fd_recv(lua_State *L)
{
	int fd = rlns_checkfd(L, 1);
	lua_Integer timeout = luaL_optinteger(L, 2, -1);
	luaL_Buffer b;
	char *buf;
	ssize_t n;

	rlns_checknargs(L, 2);
	if (timeout >= 0) {
		int r = rlns_poll_until(fd, POLLIN, rlns_now_ms() + timeout);

		if (r <= 0)
			return push_wait_failure(L, r, fd);
	}
	buf = luaL_buffinitsize(L, &b, 65536);
	n = TEMP_FAILURE_RETRY(recv(fd, buf, 65536, MSG_TRUNC));
	if (n < 0)
		return rlns_pushfail(L, errno, "recv fd %d", fd);
	if (n > 65536)
		return rlns_pushfail(L, EMSGSIZE, "recv fd %d", fd);
	if (n == 0) {
		luaL_pushfail(L);
		return 1;
	}
	luaL_pushresultsize(&b, (size_t)n);
	return 1;
}

/***
 * Shut down one or both directions of a socket.
 * @function Fd:shutdown
 * @tparam[opt="w"] string how "r", "w" or "rw"
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int
fd_shutdown(lua_State *L)
{
	static const char *const hows[] = {"r", "w", "rw", NULL};
	static const int values[] = {SHUT_RD, SHUT_WR, SHUT_RDWR};
	int fd = rlns_checkfd(L, 1);
	int how = luaL_checkoption(L, 2, "w", hows);

	if (shutdown(fd, values[how]) < 0)
		return rlns_pushfail(L, errno, "shutdown fd %d", fd);
	return rlns_pushtrue(L);
}

/***
 * A close-on-exec pipe.
 * @function pipe
 * @treturn Fd read end
 * @treturn Fd write end
 */
static int
l_pipe(lua_State *L)
{
	int *r = rlns_newfd(L);
	int *w = rlns_newfd(L);
	int fds[2];

	if (pipe2(fds, O_CLOEXEC) < 0)
		return rlns_pushfail(L, errno, "pipe");
	*r = fds[0];
	*w = fds[1];
	return 2;
}

/***
 * Open a file close-on-exec (and never through a final symlink unless
 * "follow" is given).  Modes: "r", "w" (create/truncate), "rw", "dir",
 * "path", "a" (append), "new" (create, with exactly @perm whatever the
 * umask; EEXIST when it exists).
 * @function open
 */
static int
l_open(lua_State *L)
{
	static const char *const modes[] = {"r", "w", "rw", "dir", "path", "a", "new", NULL};
	static const int flags[] = {
		O_RDONLY,
		O_WRONLY | O_CREAT | O_TRUNC,
		O_RDWR | O_CREAT,
		O_RDONLY | O_DIRECTORY,
		O_PATH,
		O_WRONLY | O_CREAT | O_APPEND,
		O_WRONLY | O_CREAT | O_EXCL,
	};
	const char *path = luaL_checkstring(L, 1);
	int mode = luaL_checkoption(L, 2, "r", modes);
	lua_Integer perm = luaL_optinteger(L, 3, 0600);
	int follow = lua_toboolean(L, 4);
	int *fd;

	rlns_checknargs(L, 4);
	fd = rlns_newfd(L);
	*fd = open(path, flags[mode] | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW), (mode_t)perm);
	if (*fd < 0)
		return rlns_pushfail(L, errno, "open `%s`", path);
	/* a new file has the mode asked for, whatever the umask */
	if ((flags[mode] & O_EXCL) && fchmod(*fd, (mode_t)perm) < 0) {
		int err = errno;

		rlns_closep(fd);
		unlink(path);
		return rlns_pushfail(L, err, "open `%s`", path);
	}
	return 1;
}

/***
 * Adopt an integer descriptor (e.g. 0) as a new owned close-on-exec Fd (dup).
 * @function dup
 */
static int
l_dup(lua_State *L)
{
	int src = rlns_checkfd(L, 1);
	int *fd = rlns_newfd(L);

	*fd = fcntl(src, F_DUPFD_CLOEXEC, 3);
	if (*fd < 0)
		return rlns_pushfail(L, errno, "dup fd %d", src);
	return 1;
}

/***
 * An anonymous close-on-exec file in memory: a forked worker writes its
 * report there, so a report of any size never blocks on a full pipe and
 * no long-lived process it forks can keep a pipe open.
 * @function memfd
 * @treturn Fd
 */
static int
l_memfd(lua_State *L)
{
	int *fd;

	rlns_checknargs(L, 0);
	fd = rlns_newfd(L);
	*fd = memfd_create("rootlessnetns-report", MFD_CLOEXEC);
	if (*fd < 0)
		return rlns_pushfail(L, errno, "memfd_create");
	return 1;
}

/***
 * Move the file offset back to the start (after a worker wrote a report).
 * @function Fd:rewind
 * @treturn[1] true
 */
static int
fd_rewind(lua_State *L)
{
	int fd = rlns_checkfd(L, 1);

	if (lseek(fd, 0, SEEK_SET) < 0)
		return rlns_pushfail(L, errno, "lseek fd %d", fd);
	return rlns_pushtrue(L);
}

/***
 * Is a descriptor close-on-exec?  For the specs that check that nothing of
 * ours leaks into a command.
 * @function cloexec
 * @tparam Fd|int fd
 * @treturn[1] boolean
 * @return[2] nil, message, errno
 */
static int
l_cloexec(lua_State *L)
{
	int fd = rlns_checkfd(L, 1);
	int fl = fcntl(fd, F_GETFD);

	if (fl < 0)
		return rlns_pushfail(L, errno, "fcntl fd %d", fd);
	lua_pushboolean(L, (fl & FD_CLOEXEC) != 0);
	return 1;
}

static const luaL_Reg fd_metameth[] = {
	{"__index", NULL},
	{"__gc", fd_gc},
	{"__close", fd_gc},
	{"__tostring", fd_tostring},
	{NULL, NULL},
};

static const luaL_Reg fd_meth[] = {
	{"close", fd_close},
	{"fileno", fd_fileno},
	{"read", l_read},
	{"readall", l_readall},
	{"write", l_write},
	{"rewind", fd_rewind},
	{"recv", fd_recv},
	{"shutdown", fd_shutdown},
	{NULL, NULL},
};

static const luaL_Reg fd_funcs[] = {
	{"read", l_read},
	{"readall", l_readall},
	{"write", l_write},
	{"pipe", l_pipe},
	{"open", l_open},
	{"dup", l_dup},
	{"memfd", l_memfd},
	{"cloexec", l_cloexec},
	{NULL, NULL},
};

void
rlns_open_fd(lua_State *L)
{
	luaL_newmetatable(L, RLNS_FD_META);
	luaL_setfuncs(L, fd_metameth, 0);
	luaL_newlibtable(L, fd_meth);
	luaL_setfuncs(L, fd_meth, 0);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	luaL_setfuncs(L, fd_funcs, 0);
}
