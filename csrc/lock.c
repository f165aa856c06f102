/*
 * lock.c - flock(2) locks as Fd objects.
 *
 * flock, not fcntl record locks: a record lock silently drops when the
 * process closes *any* descriptor of the file, which Lua code that also
 * io.open()s the file would do by accident.  The lock is held by the open
 * file description and released by close (`<close>`, __gc or :close()).
 */
/***
 * Locks.
 * @module rootlessnetns
 */

/***
 * Locks.
 * @section lock
 */
#include "rlns.h"

#include <fcntl.h>
#include <sys/file.h>

/***
 * Open (creating it 0600 when missing, never through a symlink) and
 * lock a path.  A directory is opened read-only and locked as well.
 * @function flock
 * @tparam string path
 * @tparam[opt="ex"] string mode "ex" or "sh"
 * @tparam[opt=false] boolean nonblock fail with EWOULDBLOCK instead of waiting
 * @treturn[1] Fd the lock; closing it releases the lock
 * @return[2] nil, message, errno
 */
static int
l_flock(lua_State *L)
{
	static const char *const modes[] = {"ex", "sh", NULL};
	const char *path = luaL_checkstring(L, 1);
	int shared = luaL_checkoption(L, 2, "ex", modes);
	int nonblock = lua_toboolean(L, 3);
	int op = (shared ? LOCK_SH : LOCK_EX) | (nonblock ? LOCK_NB : 0);
	int *fd;

	rlns_checknargs(L, 3);
	fd = rlns_newfd(L);
	*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (*fd < 0 && errno == EISDIR)
		*fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (*fd < 0)
		return rlns_pushfail(L, errno, "open lock `%s`", path);
	if (TEMP_FAILURE_RETRY(flock(*fd, op)) < 0) {
		int err = errno;

		rlns_closep(fd);
		return rlns_pushfail(L, err, "lock `%s`", path);
	}
	return 1;
}

static const luaL_Reg lock_funcs[] = {
	{"flock", l_flock},
	{NULL, NULL},
};

void
rlns_open_lock(lua_State *L)
{
	luaL_setfuncs(L, lock_funcs, 0);
}
