/*
 * holder.c - the process that keeps a user + mount namespace alive.
 *
 * An unprivileged user can only bind-mount a network namespace inside a
 * mount namespace owned by a user namespace of its own, and that pair lives
 * only while a process is in it (podman's "pause" process).  The holder is
 * that process: it unshares, waits while the parent writes its id maps,
 * becomes root of the new namespace, makes / rslave (host unmounts still
 * propagate in; nothing of ours leaks out) and then sleeps forever.
 *
 * Handshake over a socketpair, in reports (rlns_report): the child reports
 * its unshare; the parent writes the maps and sends one byte; the child
 * reports its setup (stage "ready" with errno 0 when all is done).
 *
 * The holder outlives the command that made it, so it keeps nothing of
 * that command's: its command line becomes a fixed title (the arguments
 * may hold secrets, and every user's ps shows them), and its descriptors
 * are /dev/null on 0-2 and the one it is asked to keep on 3, nothing else.
 */
/***
 * The holder: the process that keeps a user and mount namespace.
 * @module rootlessnetns
 */

/***
 * The holder: the process that keeps a user and mount namespace.
 * @section holder
 */
#include "rlns.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

#define HOLDER_TITLE "rootlessnetns-holder"

/*
 * Leave only /dev/null on 0-2, @keep on 3 and @ctl on 4; returns 4 (or -1
 * when @ctl was lost).  A command started with 0, 1 or 2 closed may have
 * handed us @keep or @ctl on one of them, and either may sit on 3 or 4: so
 * both are copied above 4 first, where no dup2 below lands.  Without
 * /dev/null, 0-2 are closed rather than left to what the command had there.
 */
static int
holder_fds(int keep, int ctl)
{
	int k = keep >= 0 ? fcntl(keep, F_DUPFD_CLOEXEC, 5) : -1;
	int c = fcntl(ctl, F_DUPFD_CLOEXEC, 5);
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);

	for (int fd = 0; fd < 3; fd++)
		if (fd != devnull && (devnull < 0 || dup2(devnull, fd) < 0))
			close(fd);
	/* 3 names the holder's owner in /proc/<pid>/fd/3 */
	if (k < 0 || dup2(k, 3) < 0)
		close(3);
	if (c < 0 || dup2(c, 4) < 0) {
		close(4);
		c = -1;
	}
	if (syscall(SYS_close_range, 5U, ~0U, 0U) < 0)
		for (int fd = 5; fd < 65536; fd++)
			close(fd);
	return c < 0 ? -1 : 4;
}

static void __attribute__((noreturn))
holder_child(int ctl, const char *name, int keep)
{
	struct sigaction ign = {.sa_handler = SIG_IGN};
	char go;

	/* First, so the creating command's arguments leave ps at once.  A
	 * failure is not fatal: the holder works the same without a title. */
	(void)rlns_set_proctitle(HOLDER_TITLE);
	rlns_reset_signals();
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) {
		rlns_report_send(ctl, "unshare", errno);
		_exit(1);
	}
	rlns_report_send(ctl, "unshare", 0);
	/* EOF instead of the byte: the parent gave up (or died). */
	if (rlns_read_full(ctl, &go, 1) != 1)
		_exit(1);
	if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) {
		rlns_report_send(ctl, "become root", errno);
		_exit(1);
	}
	if (mount("none", "/", "none", MS_SLAVE | MS_REC, NULL) < 0) {
		rlns_report_send(ctl, "rslave", errno);
		_exit(1);
	}
	if (setsid() < 0 || chdir("/") < 0) {
		rlns_report_send(ctl, "setsid", errno);
		_exit(1);
	}
	prctl(PR_SET_NAME, name, 0, 0, 0);
	/* Terminal and job-control signals are not for us; SIGTERM and
	 * SIGKILL end the holder. */
	for (int sig = 1; sig < 32; sig++)
		if (sig != SIGTERM && sig != SIGKILL && sig != SIGSTOP && sig != SIGCHLD)
			sigaction(sig, &ign, NULL);
	/* Before the answer: once holder_release returns, the holder is in
	 * its final state (find_running may look at fd 3 at once). */
	ctl = holder_fds(keep, ctl);
	if (ctl >= 0) {
		rlns_report_send(ctl, "ready", 0);
		close(ctl);
	}
	for (;;)
		pause();
}

/***
 * Fork a holder that has unshared a user and a mount namespace and now
 * waits for its id maps.  Its command line is `rootlessnetns-holder`,
 * whatever this process's arguments are.
 * @function holder_start
 * @tparam[opt="rlns-holder"] string name process name (comm)
 * @tparam[opt] Fd|int keep a descriptor the holder keeps open as fd 3
 * @treturn[1] int pid of the holder
 * @treturn[1] Fd control socket for holder_release
 * @return[2] nil, message, errno (e.g. EPERM/ENOSPC when user namespaces are off)
 */
static int
l_holder_start(lua_State *L)
{
	const char *name = luaL_optstring(L, 1, "rlns-holder");
	int keep = lua_isnoneornil(L, 2) ? -1 : rlns_checkfd(L, 2);
	cleanup_close int child_end = -1;
	struct rlns_report report;
	int *parent_end;
	int sv[2], got;
	pid_t pid;

	rlns_checknargs(L, 2);
	parent_end = rlns_newfd(L);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return rlns_pushfail(L, errno, "socketpair");
	*parent_end = sv[0];
	child_end = sv[1];
	pid = fork();
	if (pid < 0)
		return rlns_pushfail(L, errno, "fork");
	if (pid == 0) {
		close(sv[0]);
		holder_child(child_end, name, keep);
	}
	rlns_closep(&child_end);
	got = rlns_report_read(*parent_end, &report);
	if (got != 1 || report.err != 0) {
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		return rlns_pushfail(L, got == 1 ? report.err : ECHILD, "create user namespace");
	}
	lua_pushinteger(L, pid);
	lua_insert(L, -2);
	return 2;
}

/***
 * Let the holder go on once its maps are written; returns when it is
 * root in its namespaces with / rslave, and keeps no descriptor but
 * /dev/null on 0-2 and the one it was given on 3.
 * @function holder_release
 * @tparam Fd ctl the control socket from holder_start (closed afterwards)
 * @treturn[1] true
 * @return[2] nil, message, errno
 */
static int
l_holder_release(lua_State *L)
{
	int fd = rlns_checkfd(L, 1);
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	struct rlns_report report;
	int got;

	rlns_checknargs(L, 1);
	if (rlns_write_all(fd, "g", 1) < 0)
		return rlns_pushfail(L, errno, "start holder");
	got = rlns_report_read(fd, &report);
	if (got != 1)
		return rlns_pushfail(L, got < 0 ? errno : ECHILD, "start holder");
	if (report.err != 0)
		return rlns_pushfail(L, report.err, "set up holder namespaces (%s)", report.stage);
	/* The holder closes its end right after the answer: its end of file
	 * means it holds nothing but its final descriptors now.  Bounded, in
	 * case a copy of that end lives on in some other process. */
	if (TEMP_FAILURE_RETRY(poll(&pfd, 1, 1000)) > 0)
		(void)TEMP_FAILURE_RETRY(read(fd, &got, sizeof got));
	return rlns_pushtrue(L);
}

static const luaL_Reg holder_funcs[] = {
	{"holder_start", l_holder_start},
	{"holder_release", l_holder_release},
	{NULL, NULL},
};

void
rlns_open_holder(lua_State *L)
{
	luaL_setfuncs(L, holder_funcs, 0);
}
