/*
 * fs.c - the file operations the policy layer needs that Lua's io library
 * cannot do safely: nothing here follows a final symlink, state files are
 * replaced atomically, and trees are removed without leaving the directory
 * (or the mount) they started in.
 */
/***
 * Files: stat, atomic writes, trees, never through a final symlink.
 * @module rootlessnetns
 */

/***
 * Files: stat, atomic writes, trees, never through a final symlink.
 * @section fs
 */
#include "rlns.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/xattr.h>

static const char *
filetype(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFREG: return "file";
	case S_IFDIR: return "directory";
	case S_IFLNK: return "link";
	case S_IFCHR: return "char";
	case S_IFBLK: return "block";
	case S_IFIFO: return "fifo";
	case S_IFSOCK: return "socket";
	default: return "unknown";
	}
}

static int
push_stat(lua_State *L, const char *path, int follow)
{
	struct stat st;

	if ((follow ? stat(path, &st) : lstat(path, &st)) < 0)
		return rlns_pushfail(L, errno, "stat `%s`", path);
	lua_createtable(L, 0, 9);
	lua_pushstring(L, filetype(st.st_mode));
	lua_setfield(L, -2, "type");
	rlns_setintfield(L, "mode", st.st_mode & 07777);
	rlns_setintfield(L, "uid", st.st_uid);
	rlns_setintfield(L, "gid", st.st_gid);
	rlns_setintfield(L, "size", st.st_size);
	rlns_setintfield(L, "ino", (lua_Integer)st.st_ino);
	rlns_setintfield(L, "dev", (lua_Integer)st.st_dev);
	rlns_setintfield(L, "nlink", (lua_Integer)st.st_nlink);
	rlns_setintfield(L, "mtime", (lua_Integer)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
	return 1;
}

/***
 * lstat(2): never follows a final symlink.
 * @function lstat
 * @treturn[1] table {type, mode (permission bits), uid, gid, size, ino, dev, nlink, mtime (ns)}
 * @return[2] nil, message, errno
 */
static int
l_lstat(lua_State *L)
{
	rlns_checknargs(L, 1);
	return push_stat(L, luaL_checkstring(L, 1), 0);
}

/***
 * stat(2): follows symlinks (for host binaries and files, not our state).
 * @function stat
 */
static int
l_stat(lua_State *L)
{
	rlns_checknargs(L, 1);
	return push_stat(L, luaL_checkstring(L, 1), 1);
}

/***
 * mkdir(2): one directory (the parent must exist).
 * @function mkdir
 * @tparam string path
 * @tparam[opt=0700] int mode
 * @treturn[1] true
 * @return[2] nil, message, errno (EEXIST when it exists, whatever it is)
 */
static int
l_mkdir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	lua_Integer mode = luaL_optinteger(L, 2, 0700);

	rlns_checknargs(L, 2);
	if (mkdir(path, (mode_t)mode) < 0)
		return rlns_pushfail(L, errno, "mkdir `%s`", path);
	return rlns_pushtrue(L);
}

/***
 * chmod(2), following symlinks: for host paths, not for our state.
 * @function chmod
 * @tparam string path
 * @tparam int mode
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int
l_chmod(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	lua_Integer mode = luaL_checkinteger(L, 2);

	rlns_checknargs(L, 2);
	if (fchmodat(AT_FDCWD, path, (mode_t)mode, 0) < 0)
		return rlns_pushfail(L, errno, "chmod `%s`", path);
	return rlns_pushtrue(L);
}

/***
 * The target of a symlink, as stored (not resolved).
 * @function readlink
 * @tparam string path
 * @treturn[1] string
 * @return[2] nil, message, errno (EINVAL: not a symlink)
 */
static int
l_readlink(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	char buf[PATH_MAX];
	ssize_t n;

	rlns_checknargs(L, 1);
	n = readlink(path, buf, sizeof buf);
	if (n < 0)
		return rlns_pushfail(L, errno, "readlink `%s`", path);
	if ((size_t)n == sizeof buf)
		return rlns_pushfail(L, ENAMETOOLONG, "readlink `%s`", path);
	lua_pushlstring(L, buf, (size_t)n);
	return 1;
}

/***
 * Make a symlink at `path` pointing to `target`.
 * @function symlink
 * @tparam string target
 * @tparam string path
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int
l_symlink(lua_State *L)
{
	const char *target = luaL_checkstring(L, 1);
	const char *path = luaL_checkstring(L, 2);

	rlns_checknargs(L, 2);
	if (symlink(target, path) < 0)
		return rlns_pushfail(L, errno, "symlink `%s`", path);
	return rlns_pushtrue(L);
}

/***
 * rename(2): atomic within a file system, replacing `to`.
 * @function rename
 * @tparam string from
 * @tparam string to
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int
l_rename(lua_State *L)
{
	const char *from = luaL_checkstring(L, 1);
	const char *to = luaL_checkstring(L, 2);

	rlns_checknargs(L, 2);
	if (rename(from, to) < 0)
		return rlns_pushfail(L, errno, "rename `%s` to `%s`", from, to);
	return rlns_pushtrue(L);
}

/***
 * Remove a file or a symlink itself (never what it points to).
 * @function unlink
 * @tparam string path
 * @treturn[1] true
 * @return[2] nil, message, errno (ENOENT when it is already gone)
 */
static int
l_unlink(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);

	rlns_checknargs(L, 1);
	if (unlink(path) < 0)
		return rlns_pushfail(L, errno, "remove `%s`", path);
	return rlns_pushtrue(L);
}

/***
 * Remove an empty directory.
 * @function rmdir
 * @tparam string path
 * @treturn[1] true
 * @return[2] nil, message, errno (ENOTEMPTY, ENOENT, ...)
 */
static int
l_rmdir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);

	rlns_checknargs(L, 1);
	if (rmdir(path) < 0)
		return rlns_pushfail(L, errno, "remove `%s`", path);
	return rlns_pushtrue(L);
}

/*
 * Empty the directory @dirfd, never following symlinks and never crossing
 * into another file system (a mount point inside answers EXDEV).
 */
static int
empty_dir(int dirfd, dev_t dev, int depth)
{
	DIR *d;
	struct dirent *de;
	int err = 0;

	if (depth > 64) {
		errno = ELOOP;
		return -1;
	}
	d = fdopendir(dirfd);
	if (d == NULL) {
		close(dirfd);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno != ENOENT)
				err = err ? err : errno;
			continue;
		}
		if (st.st_dev != dev) {
			err = err ? err : EXDEV;
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(dirfd, de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub < 0 || empty_dir(sub, dev, depth + 1) < 0) {
				err = err ? err : errno;
				continue;
			}
			if (unlinkat(dirfd, de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
				err = err ? err : errno;
		} else if (unlinkat(dirfd, de->d_name, 0) < 0 && errno != ENOENT) {
			err = err ? err : errno;
		}
	}
	closedir(d);
	errno = err;
	return err ? -1 : 0;
}

/***
 * Remove a tree (rm -rf) without following symlinks or crossing mounts.
 * A missing path is success.
 * @function rmtree
 */
static int
l_rmtree(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct stat st;
	int fd;

	rlns_checknargs(L, 1);
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return rlns_pushtrue(L);
		return rlns_pushfail(L, errno, "remove `%s`", path);
	}
	if (!S_ISDIR(st.st_mode)) {
		if (unlink(path) < 0 && errno != ENOENT)
			return rlns_pushfail(L, errno, "remove `%s`", path);
		return rlns_pushtrue(L);
	}
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return rlns_pushfail(L, errno, "remove `%s`", path);
	if (empty_dir(fd, st.st_dev, 0) < 0)
		return rlns_pushfail(L, errno, "remove `%s`", path);
	if (rmdir(path) < 0 && errno != ENOENT)
		return rlns_pushfail(L, errno, "remove `%s`", path);
	return rlns_pushtrue(L);
}

/***
 * Read a whole (small) file, never through a symlink.
 * @function readfile
 * @tparam string path
 * @tparam[opt=1048576] int max bytes; a longer file is an error (EFBIG)
 */
static int
l_readfile(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	lua_Integer max = luaL_optinteger(L, 2, 1 << 20);
	cleanup_close int fd = -1;
	luaL_Buffer b;
	char *buf;
	ssize_t n;

	rlns_checknargs(L, 2);
	luaL_argcheck(L, max > 0 && max < (1 << 28), 2, "size out of range");
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return rlns_pushfail(L, errno, "read `%s`", path);
	buf = luaL_buffinitsize(L, &b, (size_t)max + 1);
	n = rlns_read_full(fd, buf, (size_t)max + 1);
	if (n < 0)
		return rlns_pushfail(L, errno, "read `%s`", path);
	if (n > max)
		return rlns_pushfail(L, EFBIG, "read `%s`", path);
	luaL_pushresultsize(&b, (size_t)n);
	return 1;
}

/***
 * Replace @path atomically: write a temporary file in the same directory,
 * then rename it over @path.  Readers see the old or the new content, never
 * a part; a crash leaves at most a `.tmp-*` file behind.
 * @function writefile
 * @tparam string path
 * @tparam string data
 * @tparam[opt=0600] int mode
 */
static int
l_writefile(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	size_t len;
	const char *data = luaL_checklstring(L, 2, &len);
	lua_Integer mode = luaL_optinteger(L, 3, 0600);
	char tmp[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int dirlen = slash ? (int)(slash - path) : 0;
	unsigned int rnd;
	cleanup_close int fd = -1;

	rlns_checknargs(L, 3);
	if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		rnd = (unsigned)getpid();
	if ((size_t)snprintf(tmp, sizeof tmp, "%.*s%s.tmp-%s-%08x", dirlen, path,
			     slash ? "/" : "", slash ? slash + 1 : path, rnd) >= sizeof tmp)
		return rlns_pushfail(L, ENAMETOOLONG, "write `%s`", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
	if (fd < 0)
		return rlns_pushfail(L, errno, "write `%s`", path);
	if (rlns_write_all(fd, data, len) < 0 || fchmod(fd, (mode_t)mode) < 0) {
		int err = errno;

		unlink(tmp);
		return rlns_pushfail(L, err, "write `%s`", path);
	}
	rlns_closep(&fd);
	if (rename(tmp, path) < 0) {
		int err = errno;

		unlink(tmp);
		return rlns_pushfail(L, err, "write `%s`", path);
	}
	return rlns_pushtrue(L);
}

/***
 * The working directory.
 * @function getcwd
 * @treturn[1] string
 * @return[2] nil, message, errno
 */
static int
l_getcwd(lua_State *L)
{
	char buf[PATH_MAX];

	if (getcwd(buf, sizeof buf) == NULL)
		return rlns_pushfail(L, errno, "getcwd");
	lua_pushstring(L, buf);
	return 1;
}

/***
 * Change the working directory to a path, or to a directory opened as an
 * Fd (fchdir: the same directory even where its path now shows another).
 * @function chdir
 * @tparam string|Fd dir
 */
static int
l_chdir(lua_State *L)
{
	if (rlns_isfd(L, 1)) {
		if (fchdir(rlns_checkfd(L, 1)) < 0)
			return rlns_pushfail(L, errno, "fchdir");
		return rlns_pushtrue(L);
	}
	const char *path = luaL_checkstring(L, 1);

	if (chdir(path) < 0)
		return rlns_pushfail(L, errno, "chdir `%s`", path);
	return rlns_pushtrue(L);
}

/***
 * Set an extended attribute on a path itself (SELinux relabel).
 * @function lsetxattr
 */
static int
l_lsetxattr(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	const char *name = luaL_checkstring(L, 2);
	size_t len;
	const char *value = luaL_checklstring(L, 3, &len);

	rlns_checknargs(L, 3);
	if (lsetxattr(path, name, value, len, 0) < 0)
		return rlns_pushfail(L, errno, "setxattr %s `%s`", name, path);
	return rlns_pushtrue(L);
}

/***
 * access(2) with the real ids: may this user read, write or run `path`?
 * @function access
 * @tparam string path
 * @tparam[opt="f"] string mode "r", "w", "x", "rw" or "f" (exists)
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int
l_access(lua_State *L)
{
	static const char *const modes[] = {"r", "w", "x", "rw", "f", NULL};
	static const int amodes[] = {R_OK, W_OK, X_OK, R_OK | W_OK, F_OK};
	const char *path = luaL_checkstring(L, 1);
	int m = luaL_checkoption(L, 2, "f", modes);

	if (access(path, amodes[m]) < 0)
		return rlns_pushfail(L, errno, "access `%s`", path);
	return rlns_pushtrue(L);
}

/***
 * Names in a directory (without "." and ".."), in no particular order.
 * @function listdir
 * @treturn[1] table list of names
 */
static int
l_listdir(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	struct dirent *de;
	DIR *d;
	int fd, i = 0;

	rlns_checknargs(L, 1);
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return rlns_pushfail(L, errno, "list `%s`", path);
	d = fdopendir(fd);
	if (d == NULL) {
		int err = errno;

		close(fd);
		return rlns_pushfail(L, err, "list `%s`", path);
	}
	lua_newtable(L);
	while ((de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		lua_pushstring(L, de->d_name);
		lua_seti(L, -2, ++i);
	}
	closedir(d);
	return 1;
}

static const luaL_Reg fs_funcs[] = {
	{"listdir", l_listdir},
	{"lstat", l_lstat},
	{"stat", l_stat},
	{"mkdir", l_mkdir},
	{"chmod", l_chmod},
	{"readlink", l_readlink},
	{"symlink", l_symlink},
	{"rename", l_rename},
	{"unlink", l_unlink},
	{"rmdir", l_rmdir},
	{"rmtree", l_rmtree},
	{"readfile", l_readfile},
	{"writefile", l_writefile},
	{"getcwd", l_getcwd},
	{"chdir", l_chdir},
	{"lsetxattr", l_lsetxattr},
	{"access", l_access},
	{NULL, NULL},
};

void
rlns_open_fs(lua_State *L)
{
	luaL_setfuncs(L, fs_funcs, 0);
}
