/*
 * core.c - luaopen_rootlessnetns: one table of primitives, assembled from
 * one file per concern.
 */
/***
 * The C primitives: `require "rootlessnetns"`.
 *
 * Mechanism only, no policy: namespaces, persistent netns pins, mounts,
 * processes, locks, descriptors, files and process identity.  Every
 * function returns `true` (or a value) on success and
 * `nil, message, errno` on failure, as Lua's io library does: the
 * message names what was being done, the errno is an integer to compare
 * with the constants of the `errno` table.  Wrong argument types (a programmer's error) raise.
 * Descriptors, locks, processes and blocked signal sets are objects with
 * `__close` and `__gc`, made for `<close>`; every descriptor is
 * close-on-exec.  The functions are grouped by the C file that holds them.
 * @module rootlessnetns
 */

/***
 * The version of the module, a string.
 * @field _VERSION
 */

/***
 * errno names to numbers (`errno.ENOENT`, `errno.EINTR`, ...): failures
 * are told apart by number, never by their message.
 * @table errno
 */
#include "rlns.h"

RLNS_EXPORT int luaopen_rootlessnetns(lua_State *L);

int
luaopen_rootlessnetns(lua_State *L)
{
	lua_newtable(L);
	rlns_open_util(L);
	rlns_open_fd(L);
	rlns_open_ns(L);
	rlns_open_netns(L);
	rlns_open_mount(L);
	rlns_open_spawn(L);
	rlns_open_lock(L);
	rlns_open_proc(L);
	rlns_open_fs(L);
	rlns_open_idmap(L);
	rlns_open_holder(L);
	rlns_open_sock(L);
	rlns_open_forward(L);
	lua_pushliteral(L, RLNS_VERSION);
	lua_setfield(L, -2, "_VERSION");
	return 1;
}
