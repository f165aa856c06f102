/*
 * mount.c - mount, umount and mountinfo queries through libmount, used the
 * way util-linux's own mount(8) uses it: one context per operation, no
 * /sbin/mount.* helpers and no utab writes (neither works, nor makes sense,
 * inside an unprivileged user namespace), fstab never consulted.
 */
#include "rlns.h"

#include <libmount/libmount.h>
#include <limits.h>
#include <string.h>
#include <sys/mount.h>

static void
cleanup_cxtp(struct libmnt_context **cxt)
{
	mnt_free_context(*cxt);
}

static void
cleanup_tablep(struct libmnt_table **tb)
{
	mnt_unref_table(*tb);
}

#define cleanup_context __attribute__((cleanup(cleanup_cxtp)))
#define cleanup_table __attribute__((cleanup(cleanup_tablep)))

static struct libmnt_context *
new_context(void)
{
	struct libmnt_context *cxt = mnt_new_context();

	if (cxt == NULL)
		return NULL;
	mnt_context_disable_helpers(cxt, 1);
	mnt_context_disable_mtab(cxt, 1);
	mnt_context_set_optsmode(cxt, MNT_OMODE_IGNORE);
	return cxt;
}

/*
 * Turn a libmount result into the failure triple.  The mount(2) errno wins
 * when the syscall ran; a plain -errno is taken as is; libmount's own
 * MNT_ERR_* codes become EINVAL with libmount's explanation.
 */
static int
push_mnt_failure(lua_State *L, struct libmnt_context *cxt, int rc, const char *what)
{
	char buf[BUFSIZ] = "";
	int err = 0;

	if (mnt_context_syscall_called(cxt))
		err = mnt_context_get_syscall_errno(cxt);
	if (err == 0 && rc < 0 && -rc < 4096)
		err = -rc;
	if (err != 0)
		return rlns_pushfail(L, err, "%s", what);
	mnt_context_get_excode(cxt, rc, buf, sizeof buf);
	luaL_pushfail(L);
	lua_pushfstring(L, "%s: %s", what, buf[0] ? buf : "libmount error");
	lua_pushinteger(L, EINVAL);
	return 3;
}

/***
 * Mount through libmount.
 * @function mount
 * @tparam string|nil source (nil for propagation changes and remounts)
 * @tparam string target
 * @tparam[opt] string fstype e.g. "tmpfs"
 * @tparam[opt] string options e.g. "rbind", "rslave", "nosuid,nodev,mode=0755"
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int
l_mount(lua_State *L)
{
	const char *source = luaL_optstring(L, 1, NULL);
	const char *target = luaL_checkstring(L, 2);
	const char *fstype = luaL_optstring(L, 3, NULL);
	const char *options = luaL_optstring(L, 4, NULL);
	cleanup_context struct libmnt_context *cxt = NULL;
	char what[PATH_MAX * 2 + 32];
	int rc;

	rlns_checknargs(L, 4);
	cxt = new_context();
	if (cxt == NULL)
		return rlns_pushfail(L, ENOMEM, "mount `%s`", target);
	if ((source && mnt_context_set_source(cxt, source)) ||
	    mnt_context_set_target(cxt, target) ||
	    (fstype && mnt_context_set_fstype(cxt, fstype)) ||
	    (options && mnt_context_set_options(cxt, options)))
		return rlns_pushfail(L, ENOMEM, "mount `%s`", target);
	rc = mnt_context_mount(cxt);
	if (rc == 0)
		return rlns_pushtrue(L);
	if (source)
		snprintf(what, sizeof what, "mount `%s` on `%s`", source, target);
	else
		snprintf(what, sizeof what, "mount %s `%s`", options ? options : "", target);
	return push_mnt_failure(L, cxt, rc, what);
}

/***
 * Unmount through libmount.
 * @function umount
 * @tparam string target
 * @tparam[opt] string options "lazy" (MNT_DETACH) and/or "force", comma separated
 */
static int
l_umount(lua_State *L)
{
	const char *target = luaL_checkstring(L, 1);
	const char *options = luaL_optstring(L, 2, "");
	cleanup_context struct libmnt_context *cxt = NULL;
	char what[PATH_MAX + 32];
	int rc;

	rlns_checknargs(L, 2);
	cxt = new_context();
	if (cxt == NULL)
		return rlns_pushfail(L, ENOMEM, "umount `%s`", target);
	for (const char *p = options; *p;) {
		size_t n = strcspn(p, ",");

		if (n == 4 && strncmp(p, "lazy", 4) == 0)
			mnt_context_enable_lazy(cxt, 1);
		else if (n == 5 && strncmp(p, "force", 5) == 0)
			mnt_context_enable_force(cxt, 1);
		else if (n > 0)
			return luaL_argerror(L, 2, "unknown umount option");
		p += n;
		if (*p == ',')
			p++;
	}
	if (mnt_context_set_target(cxt, target))
		return rlns_pushfail(L, ENOMEM, "umount `%s`", target);
	rc = mnt_context_umount(cxt);
	if (rc == 0)
		return rlns_pushtrue(L);
	snprintf(what, sizeof what, "umount `%s`", target);
	return push_mnt_failure(L, cxt, rc, what);
}

static void
push_propagation(lua_State *L, struct libmnt_fs *fs)
{
	unsigned long flags = 0;

	mnt_fs_get_propagation(fs, &flags);
	if (flags & MS_SHARED)
		lua_pushliteral(L, "shared");
	else if (flags & MS_SLAVE)
		lua_pushliteral(L, "slave");
	else if (flags & MS_UNBINDABLE)
		lua_pushliteral(L, "unbindable");
	else
		lua_pushliteral(L, "private");
}

static void
setstrfield(lua_State *L, const char *key, const char *value)
{
	if (value == NULL)
		return;
	lua_pushstring(L, value);
	lua_setfield(L, -2, key);
}

/***
 * The topmost mount whose mount point is exactly @path (after resolving
 * symlinks), from /proc/self/mountinfo.
 * @function mountinfo
 * @treturn[1] table {target, source, fstype, options, propagation, id, parent}
 * @treturn[2] false when @path is not a mount point
 * @return[3] nil, message, errno
 */
static int
l_mountinfo(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	cleanup_table struct libmnt_table *tb = NULL;
	cleanup_free char *real = NULL;
	struct libmnt_fs *fs;

	rlns_checknargs(L, 1);
	real = realpath(path, NULL);
	if (real == NULL)
		return rlns_pushfail(L, errno, "realpath `%s`", path);
	tb = mnt_new_table_from_file("/proc/self/mountinfo");
	if (tb == NULL)
		return rlns_pushfail(L, errno ? errno : EIO, "read `/proc/self/mountinfo`");
	fs = mnt_table_find_target(tb, real, MNT_ITER_BACKWARD);
	if (fs == NULL || strcmp(mnt_fs_get_target(fs), real) != 0) {
		lua_pushboolean(L, 0);
		return 1;
	}
	lua_createtable(L, 0, 7);
	setstrfield(L, "target", mnt_fs_get_target(fs));
	setstrfield(L, "source", mnt_fs_get_source(fs));
	setstrfield(L, "fstype", mnt_fs_get_fstype(fs));
	setstrfield(L, "options", mnt_fs_get_options(fs));
	setstrfield(L, "root", mnt_fs_get_root(fs));
	push_propagation(L, fs);
	lua_setfield(L, -2, "propagation");
	rlns_setintfield(L, "id", mnt_fs_get_id(fs));
	rlns_setintfield(L, "parent", mnt_fs_get_parent_id(fs));
	return 1;
}

static const luaL_Reg mount_funcs[] = {
	{"mount", l_mount},
	{"umount", l_umount},
	{"mountinfo", l_mountinfo},
	{NULL, NULL},
};

void
rlns_open_mount(lua_State *L)
{
	luaL_setfuncs(L, mount_funcs, 0);
	rlns_setintfield(L, "MNT_DETACH", MNT_DETACH);
}
