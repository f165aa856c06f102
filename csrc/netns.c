/*
 * netns.c - persistent network namespaces pinned on a path.
 *
 * A network namespace lives as long as something references it; a bind
 * mount of /proc/<pid>/ns/net onto a file is such a reference.  Creating it
 * happens in a forked child so the caller's own network namespace never
 * changes (from inside a user namespace there would be no way back).
 */
/***
 * Persistent network namespaces.
 * @module rootlessnetns
 */

/***
 * Persistent network namespaces.
 * @section netns
 */
#include "rlns.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

/* Child side of pin_netns(): runs after fork(), async-signal-safe only. */
static void __attribute__((noreturn))
pin_child(const char *path, int errfd)
{
	if (unshare(CLONE_NEWNET) < 0) {
		rlns_report_send(errfd, "unshare", errno);
		_exit(1);
	}
	if (mount("/proc/self/ns/net", path, "none", MS_BIND, NULL) < 0) {
		rlns_report_send(errfd, "bind", errno);
		_exit(1);
	}
	_exit(0);
}

/**
 * pin_netns() - create a new network namespace bound onto @path.
 *
 * The placeholder is created with O_EXCL (EEXIST is returned as is: a stale
 * file is the caller's policy decision) and removed on any failure.
 * Returns 0, or -1 with errno set and *@stage naming the failing step.
 */
static int
pin_netns(const char *path, const char **stage)
{
	struct rlns_report report;
	cleanup_close int placeholder = -1;
	cleanup_close int err_r = -1;
	cleanup_close int err_w = -1;
	int fds[2], status, err = 0, got;
	pid_t pid;

	*stage = "create";
	placeholder = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (placeholder < 0)
		return -1;
	rlns_closep(&placeholder);
	rlns_fault_point("netns-placeholder");

	*stage = "pipe";
	if (pipe2(fds, O_CLOEXEC) < 0)
		goto fail;
	err_r = fds[0];
	err_w = fds[1];
	*stage = "fork";
	pid = fork();
	if (pid < 0)
		goto fail;
	if (pid == 0)
		pin_child(path, err_w);
	rlns_closep(&err_w);
	got = rlns_report_read(err_r, &report);
	err = errno;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got == 1) {
		/* (static names: *@stage outlives the report) */
		*stage = strcmp(report.stage, "unshare") == 0 ? "unshare" : "bind";
		errno = report.err;
		goto fail;
	}
	if (got < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		*stage = "bind";
		errno = got < 0 ? err : ECHILD;
		goto fail;
	}
	return 0;
fail:
	err = errno;
	unlink(path);
	errno = err;
	return -1;
}

/***
 * Create a network namespace pinned on @path (which must not exist).
 * @function netns_create
 * @tparam string path
 * @treturn[1] true
 * @return[2] nil, message, errno (EEXIST when the path exists)
 */
static int
l_netns_create(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	const char *stage;

	rlns_checknargs(L, 1);
	if (pin_netns(path, &stage) < 0)
		return rlns_pushfail(L, errno, "create netns `%s` (%s)", path, stage);
	return rlns_pushtrue(L);
}

/* netns-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx from 16 random bytes. */
static int
random_name(char *buf, size_t len)
{
	unsigned char b[16];

	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		return -1;
	snprintf(buf, len,
		 "netns-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
		 b[12], b[13], b[14], b[15]);
	return 0;
}

/*
 * Make @dir an rshared mount point, binding it onto itself first when it
 * is not a mount point yet; under flock on the directory so that two
 * creators do not stack duplicate self-binds (iproute2 does the same).
 */
static int
prepare_run_dir(const char *dir, int dirfd, const char **stage)
{
	*stage = "lock";
	if (TEMP_FAILURE_RETRY(flock(dirfd, LOCK_EX)) < 0)
		return -1;
	*stage = "make-rshared";
	if (mount("", dir, "none", MS_SHARED | MS_REC, NULL) == 0)
		return 0;
	if (errno != EINVAL)
		return -1;
	*stage = "self-bind";
	if (mount(dir, dir, "none", MS_BIND | MS_REC, NULL) < 0)
		return -1;
	*stage = "make-rshared";
	return mount("", dir, "none", MS_SHARED | MS_REC, NULL);
}

/***
 * Create a named network namespace under the run directory @dir (created
 * 0755 when missing, made an rshared mount point under flock).
 * @function netns_create_in
 * @tparam string dir
 * @tparam[opt] string name (default: a random `netns-<uuid>`, retried on EEXIST)
 * @treturn[1] string path of the pin
 * @treturn[1] string name
 */
static int
l_netns_create_in(lua_State *L)
{
	const char *dir = luaL_checkstring(L, 1);
	const char *name = luaL_optstring(L, 2, NULL);
	cleanup_close int dirfd = -1;
	char path[PATH_MAX], gen[64];
	const char *stage = "mkdir";

	rlns_checknargs(L, 2);
	if (name && (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..") || !*name))
		return luaL_argerror(L, 2, "invalid namespace name");
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return rlns_pushfail(L, errno, "mkdir `%s`", dir);
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return rlns_pushfail(L, errno, "open `%s`", dir);
	if (prepare_run_dir(dir, dirfd, &stage) < 0)
		return rlns_pushfail(L, errno, "netns run dir `%s` (%s)", dir, stage);
	for (int attempt = 0; attempt < 10000; attempt++) {
		if (name == NULL && random_name(gen, sizeof gen) < 0)
			return rlns_pushfail(L, errno, "getrandom");
		if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name ? name : gen) >=
		    sizeof path)
			return rlns_pushfail(L, ENAMETOOLONG, "netns path in `%s`", dir);
		if (pin_netns(path, &stage) == 0) {
			lua_pushstring(L, path);
			lua_pushstring(L, name ? name : gen);
			return 2;
		}
		if (errno != EEXIST || name != NULL)
			return rlns_pushfail(L, errno, "create netns `%s` (%s)", path, stage);
	}
	return rlns_pushfail(L, EEXIST, "no free netns name in `%s`", dir);
}

static void
sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/***
 * Unmount (MNT_DETACH) and remove a pinned namespace.  Not mounted and
 * missing are success; removal is retried while EBUSY, for at most
 * `timeout_ms` (default 60000).  Paths under /proc are left alone.
 * @function netns_unmount
 * @tparam string path the pin
 * @tparam[opt=60000] int timeout_ms
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int
l_netns_unmount(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	lua_Integer timeout = luaL_optinteger(L, 2, 60000);
	long waited = 0;

	rlns_checknargs(L, 2);
	if (strncmp(path, "/proc/", 6) == 0)
		return rlns_pushtrue(L);
	if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0) {
		if (errno == ENOENT)
			return rlns_pushtrue(L);
		if (errno != EINVAL)
			return rlns_pushfail(L, errno, "unmount netns `%s`", path);
	}
	for (;;) {
		if (unlink(path) == 0 || errno == ENOENT)
			return rlns_pushtrue(L);
		if (errno != EBUSY || waited >= timeout)
			return rlns_pushfail(L, errno, "remove netns `%s`", path);
		sleep_ms(10);
		waited += 10;
	}
}

static const luaL_Reg netns_funcs[] = {
	{"netns_create", l_netns_create},
	{"netns_create_in", l_netns_create_in},
	{"netns_unmount", l_netns_unmount},
	{NULL, NULL},
};

void
rlns_open_netns(lua_State *L)
{
	luaL_setfuncs(L, netns_funcs, 0);
}
