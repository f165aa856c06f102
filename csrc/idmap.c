/*
 * idmap.c - user namespace id maps written directly (the single mapping of
 * one's own ids, which needs no privilege).  Ranges from /etc/subuid go
 * through the setuid newuidmap/newgidmap helpers, driven from Lua by spawn.
 */
/***
 * User namespace id maps.
 * @module rootlessnetns
 */

/***
 * User namespace id maps.
 * @section idmap
 */
#include "rlns.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>

static int
write_proc_file(pid_t pid, const char *name, const char *data, size_t len)
{
	char path[64];
	cleanup_close int fd = -1;

	snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	/* The kernel wants the whole map in a single write. */
	if (write(fd, data, len) != (ssize_t)len)
		return -1;
	return 0;
}

/***
 * Write /proc/<pid>/uid_map, gid_map or setgroups.
 * @function write_idmap
 * @tparam int pid
 * @tparam string which "uid_map", "gid_map" or "setgroups"
 * @tparam string content e.g. "0 1000 1\n" or "deny"
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int
l_write_idmap(lua_State *L)
{
	static const char *const files[] = {"uid_map", "gid_map", "setgroups", NULL};
	lua_Integer pid = luaL_checkinteger(L, 1);
	int which = luaL_checkoption(L, 2, NULL, files);
	size_t len;
	const char *content = luaL_checklstring(L, 3, &len);

	rlns_checknargs(L, 3);
	luaL_argcheck(L, pid > 0 && pid <= 0x7fffffff, 1, "invalid pid");
	if (write_proc_file((pid_t)pid, files[which], content, len) < 0)
		return rlns_pushfail(L, errno, "write /proc/%d/%s", (int)pid, files[which]);
	return rlns_pushtrue(L);
}

static const luaL_Reg idmap_funcs[] = {
	{"write_idmap", l_write_idmap},
	{NULL, NULL},
};

void
rlns_open_idmap(lua_State *L)
{
	luaL_setfuncs(L, idmap_funcs, 0);
}
