/*
 * rlns.h - shared declarations of the rootlessnetns C core.
 *
 * The core is mechanism only: every policy decision (which backend, which
 * mounts, which files) lives in the Lua layer.  Conventions used by every
 * file in csrc/:
 *
 *  - Bindings (static int l_name(lua_State *L)) check their arguments, call
 *    one helper and push the result.  Success is `true` or a value; failure
 *    is `nil, message, errno` (rlns_pushfail).  Wrong argument types raise.
 *  - Helpers (rlns_*) never touch a lua_State, return 0 or -1 with errno
 *    set, and are safe to call in a forked child.
 *  - Every descriptor is opened close-on-exec; everything a caller must
 *    release is a userdata with __close and __gc.
 */
#ifndef RLNS_H
#define RLNS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#define RLNS_EXPORT __attribute__((visibility("default")))
#define RLNS_VERSION "0.1.0"

#define RLNS_FD_META "rootlessnetns.Fd"
#define RLNS_PROCESS_META "rootlessnetns.Process"
#define RLNS_SIGNALS_META "rootlessnetns.Signals"

/* Name of the environment variable whose value names a fault point: the
 * process SIGKILLs itself when it reaches that point (crash-safety tests). */
#define RLNS_FAULT_ENV "ROOTLESSNETNS_FAULT"

static inline void
rlns_closep(int *fd)
{
	if (*fd >= 0) {
		int saved_errno = errno;
		close(*fd);
		errno = saved_errno;
		*fd = -1;
	}
}

static inline void
rlns_freep(void *p)
{
	free(*(void **)p);
}

#define cleanup_close __attribute__((cleanup(rlns_closep)))
#define cleanup_free __attribute__((cleanup(rlns_freep)))

/* Hand ownership of a descriptor to someone else; the cleanup is disarmed. */
static inline int
steal_fd(int *fd)
{
	int r = *fd;
	*fd = -1;
	return r;
}

/* util.c */
int rlns_pushfail(lua_State *L, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int rlns_pushtrue(lua_State *L);
ssize_t rlns_write_all(int fd, const void *buf, size_t len);
ssize_t rlns_read_full(int fd, void *buf, size_t len);
long long rlns_now_ms(void);
int rlns_poll_until(int fd, short events, long long deadline);
void rlns_fault_point(const char *point);

/*
 * The one report a forked C child sends its parent (spawn, netns_create,
 * holder_start): the step it was at and errno there (0: that step is
 * done).  Fixed size, so one write is one report, and async-signal-safe.
 * The Lua layer's children report in rootlessnetns.worker's form.
 */
struct rlns_report {
	int err;
	char stage[16];
};
void rlns_report_send(int fd, const char *stage, int err);
int rlns_report_read(int fd, struct rlns_report *r);
void rlns_setintfield(lua_State *L, const char *key, lua_Integer value);
void rlns_checknargs(lua_State *L, int max);
int rlns_checkflags(lua_State *L, int idx);
void rlns_open_util(lua_State *L);

/* fd.c */
int *rlns_newfd(lua_State *L);
int rlns_checkfd(lua_State *L, int idx);
int rlns_isfd(lua_State *L, int idx);
void rlns_open_fd(lua_State *L);

/* Each of these adds its functions and constants to the table on top. */
void rlns_open_ns(lua_State *L);
void rlns_open_netns(lua_State *L);
void rlns_open_mount(lua_State *L);
void rlns_open_spawn(lua_State *L);
void rlns_open_lock(lua_State *L);
void rlns_open_proc(lua_State *L);
void rlns_open_fs(lua_State *L);
void rlns_open_idmap(lua_State *L);
void rlns_open_holder(lua_State *L);
void rlns_open_sock(lua_State *L);
void rlns_open_forward(lua_State *L);

/* sock.c: numeric socket addresses, shared with forward.c */
int rlns_parse_addr(const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len);
const char *rlns_format_addr(const struct sockaddr *sa, char *buf, size_t size, int *port);
#define RLNS_ADDRSTRLEN 64

/* spawn.c: the signalfd of the Signals object at @idx (-1 when it is
 * none or nil, or closed); raises on any other type */
int rlns_signals_fd(lua_State *L, int idx);

/* proc.c: helpers shared with spawn.c and holder.c */
int rlns_proc_starttime(pid_t pid, unsigned long long *starttime, char *state);
int rlns_pidfd_open(pid_t pid);
void rlns_reset_signals(void);

/* title.c: for long-lived children (the holder) */
int rlns_set_proctitle(const char *title);

#endif /* RLNS_H */
