/*
 * core.c - luaopen_rootlessnetns: one table of primitives, assembled from
 * one file per concern.
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
