/*
 * proc.c - process identity.  A pid alone names a process only until it is
 * reused; pid + start time (field 22 of /proc/<pid>/stat, in clock ticks
 * since boot) names it for good.  Signals go through a pidfd opened after
 * the identity check, so a reused pid yields ESRCH, never a signal.
 */
/***
 * Process identity, clocks and signals by pidfd.
 * @module rootlessnetns
 */

/***
 * Process identity, clocks and signals by pidfd.
 * @section proc
 */
#include "rlns.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

int
rlns_pidfd_open(pid_t pid)
{
	/* pidfd_open always returns a close-on-exec descriptor. */
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int
pidfd_send_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

/**
 * rlns_proc_starttime() - read start time and state of @pid.
 * Returns 0, or -1 with errno (ESRCH when the process does not exist).
 */
int
rlns_proc_starttime(pid_t pid, unsigned long long *starttime, char *state)
{
	char path[64], buf[1024];
	cleanup_close int fd = -1;
	const char *p;
	ssize_t n;
	int field;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			errno = ESRCH;
		return -1;
	}
	/* One read: the kernel renders the whole line for the first read
	 * that has room for it (a few hundred bytes), so a second read would
	 * only see the end -- a syscall every warm run would pay five times. */
	n = TEMP_FAILURE_RETRY(read(fd, buf, sizeof buf - 1));
	if (n < 0) {
		if (errno == ESRCH || errno == ENOENT)
			errno = ESRCH;
		return -1;
	}
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: fields start after the last ')'. */
	p = strrchr(buf, ')');
	if (p == NULL || p[1] != ' ') {
		errno = EIO;
		return -1;
	}
	p += 2;
	if (state)
		*state = *p;
	/* p is at field 3 (state); the start time is field 22. */
	for (field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (p != NULL) {
		char *end;

		errno = 0;
		*starttime = strtoull(p, &end, 10);
		if (errno == 0 && end != p && (*end == ' ' || *end == '\0'))
			return 0;
	}
	errno = EIO;
	return -1;
}

static pid_t
checkpid(lua_State *L, int idx)
{
	lua_Integer pid = luaL_checkinteger(L, idx);

	luaL_argcheck(L, pid > 0 && pid <= 0x7fffffff, idx, "invalid pid");
	return (pid_t)pid;
}

/***
 * Start time and state of a process.
 * @function starttime
 * @tparam int pid
 * @treturn[1] int start time (clock ticks after boot)
 * @treturn[1] string state letter ("R", "S", "Z", ...)
 * @return[2] nil, message, errno (ESRCH: no such process)
 */
static int
l_starttime(lua_State *L)
{
	pid_t pid = checkpid(L, 1);
	unsigned long long st;
	char state[2] = {0, 0};

	rlns_checknargs(L, 1);
	if (rlns_proc_starttime(pid, &st, state) < 0)
		return rlns_pushfail(L, errno, "process %d", (int)pid);
	lua_pushinteger(L, (lua_Integer)st);
	lua_pushstring(L, state);
	return 2;
}

/*
 * Open a pidfd on @pid and check that it is still the process that started
 * at @starttime and is not a zombie.  Returns the pidfd, or -1 with ESRCH.
 */
static int
open_verified(pid_t pid, unsigned long long starttime)
{
	cleanup_close int pidfd = -1;
	unsigned long long st;
	char state;

	pidfd = rlns_pidfd_open(pid);
	if (pidfd < 0 && errno != ENOSYS)
		return -1;
	/* The pidfd now pins the identity: if the start time still matches,
	 * the pidfd refers to the process we recorded. */
	if (rlns_proc_starttime(pid, &st, &state) < 0)
		return -1;
	if (st != starttime || state == 'Z' || state == 'X') {
		errno = ESRCH;
		return -1;
	}
	errno = 0;
	return steal_fd(&pidfd);
}

/***
 * Is the process @pid that started at @starttime alive (not a zombie)?
 * @function alive
 * @treturn boolean
 */
static int
l_alive(lua_State *L)
{
	pid_t pid = checkpid(L, 1);
	lua_Integer starttime = luaL_checkinteger(L, 2);
	unsigned long long st;
	char state;

	rlns_checknargs(L, 2);
	lua_pushboolean(L, rlns_proc_starttime(pid, &st, &state) == 0 &&
				   st == (unsigned long long)starttime && state != 'Z' &&
				   state != 'X');
	return 1;
}

/***
 * Signal @pid only if it is still the process that started at @starttime.
 * @function kill
 * @tparam int pid
 * @tparam int starttime
 * @tparam[opt=SIGTERM] int sig (0 checks only)
 * @treturn[1] true
 * @return[2] nil, message, errno (ESRCH when gone or reused)
 */
static int
l_kill(lua_State *L)
{
	pid_t pid = checkpid(L, 1);
	lua_Integer starttime = luaL_checkinteger(L, 2);
	int sig = (int)luaL_optinteger(L, 3, SIGTERM);
	cleanup_close int pidfd = -1;

	rlns_checknargs(L, 3);
	luaL_argcheck(L, sig >= 0 && sig < 65, 3, "invalid signal");
	errno = 0;
	pidfd = open_verified(pid, (unsigned long long)starttime);
	if (pidfd < 0 && errno != 0)
		return rlns_pushfail(L, errno, "signal process %d", (int)pid);
	/* No pidfds (old kernel, valgrind): the identity was checked just
	 * now, so only a pid reused within these microseconds could be hit. */
	if (pidfd < 0 ? kill(pid, sig) < 0 : pidfd_send_signal(pidfd, sig) < 0)
		return rlns_pushfail(L, errno, "signal process %d", (int)pid);
	return rlns_pushtrue(L);
}

/***
 * This process's pid (in its pid namespace).
 * @function getpid
 * @treturn int
 */
static int
l_getpid(lua_State *L)
{
	lua_pushinteger(L, getpid());
	return 1;
}

/***
 * The parent's pid (in its pid namespace).
 * @function getppid
 * @treturn int
 */
static int
l_getppid(lua_State *L)
{
	lua_pushinteger(L, getppid());
	return 1;
}

/***
 * Real user and group ids as the kernel reports them in this process's
 * user namespace.
 * @function getuid
 * @treturn int uid
 * @treturn int gid
 * @treturn int euid
 * @treturn int egid
 */
static int
l_getuid(lua_State *L)
{
	lua_pushinteger(L, getuid());
	lua_pushinteger(L, getgid());
	lua_pushinteger(L, geteuid());
	lua_pushinteger(L, getegid());
	return 4;
}

/* Put every signal back to its default disposition and unblock them all:
 * used by forked children before exec, after fork and in the holder. */
void
rlns_reset_signals(void)
{
	struct sigaction sa = {.sa_handler = SIG_DFL};
	sigset_t none;

	for (int sig = 1; sig < 32; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		sigaction(sig, &sa, NULL);
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/***
 * Monotonic clock in seconds (for timing steps, never for deciding).
 * @function clock
 */
static int
l_clock(lua_State *L)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
	return 1;
}

/***
 * Sleep for @ms milliseconds.
 * @function sleep
 */
static int
l_sleep(lua_State *L)
{
	lua_Integer ms = luaL_checkinteger(L, 1);
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};

	luaL_argcheck(L, ms >= 0, 1, "negative duration");
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return 0;
}

static const luaL_Reg proc_funcs[] = {
	{"clock", l_clock},
	{"sleep", l_sleep},
	{"starttime", l_starttime},
	{"alive", l_alive},
	{"kill", l_kill},
	{"getpid", l_getpid},
	{"getppid", l_getppid},
	{"getuid", l_getuid},
	{NULL, NULL},
};

#define RLNS_SIG(name) {#name, name}
static const struct {
	const char *name;
	int value;
} signal_table[] = {
	RLNS_SIG(SIGHUP),  RLNS_SIG(SIGINT),  RLNS_SIG(SIGQUIT), RLNS_SIG(SIGKILL),
	RLNS_SIG(SIGUSR1), RLNS_SIG(SIGUSR2), RLNS_SIG(SIGPIPE), RLNS_SIG(SIGALRM),
	RLNS_SIG(SIGTERM), RLNS_SIG(SIGCHLD), RLNS_SIG(SIGCONT), RLNS_SIG(SIGSTOP),
	RLNS_SIG(SIGTSTP), RLNS_SIG(SIGWINCH),
};

void
rlns_open_proc(lua_State *L)
{
	luaL_setfuncs(L, proc_funcs, 0);
	for (size_t i = 0; i < sizeof signal_table / sizeof signal_table[0]; i++)
		rlns_setintfield(L, signal_table[i].name, signal_table[i].value);
}
