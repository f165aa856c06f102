/*
 * mount.c - mount, umount and mountinfo queries through libmount, used the
 * way util-linux's own mount(8) uses it: one context per operation, no
 * /sbin/mount.* helpers and no utab writes (neither works, nor makes sense,
 * inside an unprivileged user namespace), fstab never consulted.
 *
 * libmount is loaded on first use, not linked: with libblkid, libselinux
 * and libpcre2 it takes ~0.9 ms to map and relocate, on every command,
 * which is more than all the rest of a warm `run` beyond its floor.  The
 * mounts a run makes (binds, propagation changes, a tmpfs) are each one
 * mount(2) call whose flags need no interpretation; those are made
 * directly, and every other option string goes through libmount.
 */
/***
 * Mounts.
 * @module rootlessnetns
 */

/***
 * Mounts.
 * @section mount
 */
#include "rlns.h"

#include <dlfcn.h>
#include <libmount/libmount.h>
#include <limits.h>
#include <string.h>
#include <sys/mount.h>

#define LIBMOUNT_SYMBOLS(X)                                                                    \
	X(mnt_new_context)                                                                     \
	X(mnt_free_context)                                                                    \
	X(mnt_context_disable_helpers)                                                         \
	X(mnt_context_disable_mtab)                                                            \
	X(mnt_context_set_optsmode)                                                            \
	X(mnt_context_syscall_called)                                                          \
	X(mnt_context_get_syscall_errno)                                                       \
	X(mnt_context_get_excode)                                                              \
	X(mnt_context_set_source)                                                              \
	X(mnt_context_set_target)                                                              \
	X(mnt_context_set_fstype)                                                              \
	X(mnt_context_set_options)                                                             \
	X(mnt_context_mount)                                                                   \
	X(mnt_context_enable_lazy)                                                             \
	X(mnt_context_enable_force)                                                            \
	X(mnt_context_umount)                                                                  \
	X(mnt_new_table_from_file)                                                             \
	X(mnt_unref_table)                                                                     \
	X(mnt_table_find_target)                                                               \
	X(mnt_fs_get_propagation)                                                              \
	X(mnt_fs_get_target)                                                                   \
	X(mnt_fs_get_source)                                                                   \
	X(mnt_fs_get_fstype)                                                                   \
	X(mnt_fs_get_options)                                                                  \
	X(mnt_fs_get_root)                                                                     \
	X(mnt_fs_get_id)                                                                       \
	X(mnt_fs_get_parent_id)

/* The libmount functions we call, typed from libmount's own prototypes
 * (a declarator cannot be parenthesized). */
static struct {
// NOLINTNEXTLINE(bugprone-macro-parentheses)
#define X(name) __typeof__(&name) name;
	LIBMOUNT_SYMBOLS(X)
#undef X
} lm;

static const char *lm_error; /* why libmount could not be loaded */

/*
 * Load libmount once.  Returns 0, or -1 with lm_error set (the handle is
 * kept for the life of the process: our functions point into it).
 */
static int
load_libmount(void)
{
	static int state; /* 0 not tried, 1 loaded, -1 failed */
	void *handle;

	if (state != 0)
		return state > 0 ? 0 : -1;
	handle = dlopen("libmount.so.1", RTLD_NOW | RTLD_LOCAL);
	if (handle == NULL) {
		lm_error = dlerror();
		state = -1;
		return -1;
	}
#define X(name)                                                                                \
	*(void **)&lm.name = dlsym(handle, #name);                                             \
	if (lm.name == NULL) {                                                                 \
		lm_error = "libmount.so.1 lacks " #name;                                       \
		state = -1;                                                                    \
		return -1;                                                                     \
	}
	LIBMOUNT_SYMBOLS(X)
#undef X
	state = 1;
	return 0;
}

static int
push_no_libmount(lua_State *L, const char *what, const char *target)
{
	luaL_pushfail(L);
	lua_pushfstring(L, "%s `%s`: cannot load libmount (%s)", what, target,
			lm_error ? lm_error : "unknown error");
	lua_pushinteger(L, ENOSYS);
	return 3;
}

static void
cleanup_cxtp(struct libmnt_context **cxt)
{
	if (*cxt)
		lm.mnt_free_context(*cxt);
}

static void
cleanup_tablep(struct libmnt_table **tb)
{
	if (*tb)
		lm.mnt_unref_table(*tb);
}

#define cleanup_context __attribute__((cleanup(cleanup_cxtp)))
#define cleanup_table __attribute__((cleanup(cleanup_tablep)))

static struct libmnt_context *
new_context(void)
{
	struct libmnt_context *cxt = lm.mnt_new_context();

	if (cxt == NULL)
		return NULL;
	lm.mnt_context_disable_helpers(cxt, 1);
	lm.mnt_context_disable_mtab(cxt, 1);
	lm.mnt_context_set_optsmode(cxt, MNT_OMODE_IGNORE);
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

	if (lm.mnt_context_syscall_called(cxt))
		err = lm.mnt_context_get_syscall_errno(cxt);
	if (err == 0 && rc < 0 && -rc < 4096)
		err = -rc;
	if (err != 0)
		return rlns_pushfail(L, err, "%s", what);
	lm.mnt_context_get_excode(cxt, rc, buf, sizeof buf);
	luaL_pushfail(L);
	lua_pushfstring(L, "%s: %s", what, buf[0] ? buf : "libmount error");
	lua_pushinteger(L, EINVAL);
	return 3;
}

/* ---- single-call mounts, without libmount ---------------------------- */

enum flag_kind { VFS_FLAG, BIND_FLAG, PROPAGATION_FLAG };

/* mount(2)'s flags by the names mount(8) gives them. */
static const struct {
	const char *name;
	unsigned long set, clear;
	enum flag_kind kind;
} mount_flags[] = {
	{"ro", MS_RDONLY, 0, VFS_FLAG},
	{"rw", 0, MS_RDONLY, VFS_FLAG},
	{"nosuid", MS_NOSUID, 0, VFS_FLAG},
	{"suid", 0, MS_NOSUID, VFS_FLAG},
	{"nodev", MS_NODEV, 0, VFS_FLAG},
	{"dev", 0, MS_NODEV, VFS_FLAG},
	{"noexec", MS_NOEXEC, 0, VFS_FLAG},
	{"exec", 0, MS_NOEXEC, VFS_FLAG},
	{"sync", MS_SYNCHRONOUS, 0, VFS_FLAG},
	{"async", 0, MS_SYNCHRONOUS, VFS_FLAG},
	{"dirsync", MS_DIRSYNC, 0, VFS_FLAG},
	{"noatime", MS_NOATIME, 0, VFS_FLAG},
	{"atime", 0, MS_NOATIME, VFS_FLAG},
	{"nodiratime", MS_NODIRATIME, 0, VFS_FLAG},
	{"diratime", 0, MS_NODIRATIME, VFS_FLAG},
	{"relatime", MS_RELATIME, 0, VFS_FLAG},
	{"norelatime", 0, MS_RELATIME, VFS_FLAG},
	{"strictatime", MS_STRICTATIME, 0, VFS_FLAG},
	{"nostrictatime", 0, MS_STRICTATIME, VFS_FLAG},
	{"bind", MS_BIND, 0, BIND_FLAG},
	{"rbind", MS_BIND | MS_REC, 0, BIND_FLAG},
	{"shared", MS_SHARED, 0, PROPAGATION_FLAG},
	{"rshared", MS_SHARED | MS_REC, 0, PROPAGATION_FLAG},
	{"slave", MS_SLAVE, 0, PROPAGATION_FLAG},
	{"rslave", MS_SLAVE | MS_REC, 0, PROPAGATION_FLAG},
	{"private", MS_PRIVATE, 0, PROPAGATION_FLAG},
	{"rprivate", MS_PRIVATE | MS_REC, 0, PROPAGATION_FLAG},
	{"unbindable", MS_UNBINDABLE, 0, PROPAGATION_FLAG},
	{"runbindable", MS_UNBINDABLE | MS_REC, 0, PROPAGATION_FLAG},
};

/* File systems whose key=value options are the kernel's alone (mount(8)
 * has nothing to interpret in them). */
static const char *const plain_fstypes[] = {"tmpfs", "sysfs", "proc", "ramfs", "mqueue"};

struct single_mount {
	unsigned long flags;
	char data[256];
};

static int
is_plain_fstype(const char *fstype)
{
	for (size_t i = 0; i < sizeof plain_fstypes / sizeof plain_fstypes[0]; i++)
		if (strcmp(fstype, plain_fstypes[i]) == 0)
			return 1;
	return 0;
}

/*
 * Can @options be done with one mount(2) call, as libmount would do it?
 * That is: propagation words alone (no source), bind or rbind alone, or
 * a mount of a plain file system with flags and key=value data.  Anything
 * else (bind,ro needs a remount; x-* and other userspace options mean
 * something to mount(8) only) is left to libmount: returns 0.
 */
static int
plan_single_mount(const char *source, const char *fstype, const char *options,
		  struct single_mount *m)
{
	unsigned kinds = 0;
	size_t used = 0;

	m->flags = 0;
	m->data[0] = '\0';
	for (const char *p = options ? options : ""; *p;) {
		size_t n = strcspn(p, ",");
		int known = 0;

		for (size_t i = 0; n > 0 && i < sizeof mount_flags / sizeof mount_flags[0]; i++) {
			if (strlen(mount_flags[i].name) == n && strncmp(p, mount_flags[i].name, n) == 0) {
				m->flags = (m->flags & ~mount_flags[i].clear) | mount_flags[i].set;
				kinds |= 1U << mount_flags[i].kind;
				known = 1;
				break;
			}
		}
		if (!known && n > 0) {
			const char *eq = memchr(p, '=', n);

			if (fstype == NULL || !is_plain_fstype(fstype) || eq == NULL || eq == p ||
			    strncmp(p, "x-", 2) == 0 || used + n + 2 > sizeof m->data)
				return 0;
			if (used > 0)
				m->data[used++] = ',';
			memcpy(m->data + used, p, n);
			used += n;
			m->data[used] = '\0';
		}
		p += n;
		if (*p == ',')
			p++;
	}
	if (kinds == 1U << PROPAGATION_FLAG)
		return source == NULL && fstype == NULL;
	if (kinds == 1U << BIND_FLAG)
		return source != NULL && fstype == NULL;
	return (kinds & ~(1U << VFS_FLAG)) == 0 && fstype != NULL && source != NULL;
}

/***
 * Mount: one mount(2) call when the options need no interpretation,
 * otherwise through libmount (as mount(8)).
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

	struct single_mount single;

	rlns_checknargs(L, 4);
	if (plan_single_mount(source, fstype, options, &single)) {
		if (mount(source, target, fstype, single.flags, single.data[0] ? single.data : NULL) == 0)
			return rlns_pushtrue(L);
		if (source)
			return rlns_pushfail(L, errno, "mount `%s` on `%s`", source, target);
		return rlns_pushfail(L, errno, "mount %s `%s`", options ? options : "", target);
	}
	if (load_libmount() < 0)
		return push_no_libmount(L, "mount", target);
	cxt = new_context();
	if (cxt == NULL)
		return rlns_pushfail(L, ENOMEM, "mount `%s`", target);
	if ((source && lm.mnt_context_set_source(cxt, source)) ||
	    lm.mnt_context_set_target(cxt, target) ||
	    (fstype && lm.mnt_context_set_fstype(cxt, fstype)) ||
	    (options && lm.mnt_context_set_options(cxt, options)))
		return rlns_pushfail(L, ENOMEM, "mount `%s`", target);
	rc = lm.mnt_context_mount(cxt);
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
	if (load_libmount() < 0)
		return push_no_libmount(L, "umount", target);
	cxt = new_context();
	if (cxt == NULL)
		return rlns_pushfail(L, ENOMEM, "umount `%s`", target);
	for (const char *p = options; *p;) {
		size_t n = strcspn(p, ",");

		if (n == 4 && strncmp(p, "lazy", 4) == 0)
			lm.mnt_context_enable_lazy(cxt, 1);
		else if (n == 5 && strncmp(p, "force", 5) == 0)
			lm.mnt_context_enable_force(cxt, 1);
		else if (n > 0)
			return luaL_argerror(L, 2, "unknown umount option");
		p += n;
		if (*p == ',')
			p++;
	}
	if (lm.mnt_context_set_target(cxt, target))
		return rlns_pushfail(L, ENOMEM, "umount `%s`", target);
	rc = lm.mnt_context_umount(cxt);
	if (rc == 0)
		return rlns_pushtrue(L);
	snprintf(what, sizeof what, "umount `%s`", target);
	return push_mnt_failure(L, cxt, rc, what);
}

static void
push_propagation(lua_State *L, struct libmnt_fs *fs)
{
	unsigned long flags = 0;

	lm.mnt_fs_get_propagation(fs, &flags);
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
	if (load_libmount() < 0)
		return push_no_libmount(L, "mountinfo", path);
	real = realpath(path, NULL);
	if (real == NULL)
		return rlns_pushfail(L, errno, "realpath `%s`", path);
	tb = lm.mnt_new_table_from_file("/proc/self/mountinfo");
	if (tb == NULL)
		return rlns_pushfail(L, errno ? errno : EIO, "read `/proc/self/mountinfo`");
	fs = lm.mnt_table_find_target(tb, real, MNT_ITER_BACKWARD);
	if (fs == NULL || strcmp(lm.mnt_fs_get_target(fs), real) != 0) {
		lua_pushboolean(L, 0);
		return 1;
	}
	lua_createtable(L, 0, 7);
	setstrfield(L, "target", lm.mnt_fs_get_target(fs));
	setstrfield(L, "source", lm.mnt_fs_get_source(fs));
	setstrfield(L, "fstype", lm.mnt_fs_get_fstype(fs));
	setstrfield(L, "options", lm.mnt_fs_get_options(fs));
	setstrfield(L, "root", lm.mnt_fs_get_root(fs));
	push_propagation(L, fs);
	lua_setfield(L, -2, "propagation");
	rlns_setintfield(L, "id", lm.mnt_fs_get_id(fs));
	rlns_setintfield(L, "parent", lm.mnt_fs_get_parent_id(fs));
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
