/*
 * forward.c - the port forwarder's mechanism: published ports whose
 * listening sockets live in the host network namespace and whose
 * connections are made from inside the target namespace.
 *
 * Two processes.  The forwarder (host netns) owns the listeners and one
 * epoll loop.  The socket maker (target netns, core.socket_maker) makes
 * one socket per request: of the inside address's family, bound to the
 * client's address when that works (so the server sees who connects),
 * with a non-blocking connect under way, and sends it back over a
 * SOCK_SEQPACKET socketpair with SCM_RIGHTS.  Bytes move with splice(2)
 * through one pipe per direction; datagrams with recvfrom/send.  No
 * thread or process per connection.
 *
 * Policy (which ports, when, what the user is told) is the Lua side's.
 *
 * What fw:remove() does to established connections: a TCP forward's
 * listener is closed at once (new connections are refused), and the
 * connections it already accepted keep flowing until they end; nothing of
 * any other forward is touched.  A UDP forward's flows end with it: their
 * replies leave through the host socket that remove() closes.
 */
/***
 * Published ports: the forwarder and its socket maker.
 * @module rootlessnetns
 */

/***
 * Published ports: the forwarder and its socket maker.
 * @section forward
 */
#include "rlns.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define FORWARDER_META "rootlessnetns.Forwarder"

#define MAX_SLOTS 65536	     /* connections and flows, all forwards together */
#define LISTEN_BACKLOG 4096
#define PIPE_MAX (1 << 20)   /* a pipe grows to this once it fills */
#define UDP_BUF 65536
#define UDP_QUEUE 8	     /* datagrams kept while a flow's socket is made */
#define UDP_BATCH 64	     /* datagrams per event, so one flow cannot starve the rest */
#define ACCEPT_PAUSE_MS 100  /* after EMFILE or a full table */
#define HASH_BUCKETS 4096
#define MAX_EVENTS 256

/* ---- wire format: the forwarder and the maker are the same binary ---- */

union fwd_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

struct fwd_request {
	uint64_t tag;
	int32_t type; /* SOCK_STREAM or SOCK_DGRAM */
	int32_t reserved;
	union fwd_addr client; /* AF_UNSPEC: nothing to keep */
	union fwd_addr inside;
};

struct fwd_reply {
	uint64_t tag;
	int32_t err; /* 0: the socket is attached */
	int32_t source_kept;
};

static socklen_t
addr_len(const union fwd_addr *a)
{
	return a->sa.sa_family == AF_INET ? sizeof a->in : sizeof a->in6;
}

/* ---- the socket maker ----------------------------------------------- */

/*
 * The address to bind to, in @family, for a connection from @client:
 * the client's own, an IPv4-mapped client as plain IPv4, an IPv4 client
 * as IPv4-mapped IPv6.  Returns 0 when there is none.
 */
static int
source_for(const union fwd_addr *client, int family, union fwd_addr *src)
{
	memset(src, 0, sizeof *src);
	if (client->sa.sa_family == AF_INET && family == AF_INET) {
		src->in = client->in;
	} else if (client->sa.sa_family == AF_INET6 && family == AF_INET6) {
		src->in6.sin6_family = AF_INET6;
		src->in6.sin6_addr = client->in6.sin6_addr;
		src->in6.sin6_port = client->in6.sin6_port;
		/* a host interface index means nothing inside */
	} else if (client->sa.sa_family == AF_INET6 && family == AF_INET &&
		   IN6_IS_ADDR_V4MAPPED(&client->in6.sin6_addr)) {
		src->in.sin_family = AF_INET;
		src->in.sin_port = client->in6.sin6_port;
		memcpy(&src->in.sin_addr, &client->in6.sin6_addr.s6_addr[12], 4);
	} else if (client->sa.sa_family == AF_INET && family == AF_INET6) {
		src->in6.sin6_family = AF_INET6;
		src->in6.sin6_port = client->in.sin_port;
		src->in6.sin6_addr.s6_addr[10] = 0xff;
		src->in6.sin6_addr.s6_addr[11] = 0xff;
		memcpy(&src->in6.sin6_addr.s6_addr[12], &client->in.sin_addr, 4);
	} else {
		return 0;
	}
	return 1;
}

/* Bind @fd to @src: its port when free, else any. */
static int
bind_source(int fd, int type, union fwd_addr *src)
{
	int one = 1;

	if (bind(fd, &src->sa, addr_len(src)) == 0)
		return 0;
	if (errno != EADDRINUSE)
		return -1;
	if (src->sa.sa_family == AF_INET)
		src->in.sin_port = 0;
	else
		src->in6.sin6_port = 0;
	/* the port is chosen at connect time, per destination */
	if (type == SOCK_STREAM)
		(void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
	return bind(fd, &src->sa, addr_len(src));
}

/*
 * The socket for @rq: bound to the client's address where possible
 * (a transparent socket when the address is not local), with its connect
 * to the inside address started.  Returns the descriptor (*@kept: the
 * source address was kept) or -1 with errno.
 */
static int
make_socket(const struct fwd_request *rq, int *kept)
{
	int family = rq->inside.sa.sa_family;
	union fwd_addr src;
	int have_src = source_for(&rq->client, family, &src);

	for (int attempt = have_src ? 0 : 1; attempt < 2; attempt++) {
		cleanup_close int fd = socket(family, rq->type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return -1;
		*kept = 0;
		if (attempt == 0) {
			int r = bind_source(fd, rq->type, &src);

			if (r < 0 && errno == EADDRNOTAVAIL) {
				int one = 1;
				int t = family == AF_INET
						? setsockopt(fd, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof one)
						: setsockopt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, &one, sizeof one);

				if (t == 0)
					r = bind_source(fd, rq->type, &src);
			}
			if (r < 0)
				continue; /* a fresh socket, unbound */
			*kept = 1;
		}
		if (connect(fd, &rq->inside.sa, addr_len(&rq->inside)) < 0 && errno != EINPROGRESS) {
			/* the kept source may be what the route refuses
			 * (an IPv4-mapped source towards IPv6): once more without */
			if (attempt == 0 && errno != ECONNREFUSED)
				continue;
			return -1;
		}
		return steal_fd(&fd);
	}
	return -1;
}

/* Send @rp, with @fd attached when it is >= 0.  0, or -1 with errno. */
static int
send_reply(int sock, const struct fwd_reply *rp, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)rp, .iov_len = sizeof *rp};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof u);
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof u.buf;
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	}
	return TEMP_FAILURE_RETRY(sendmsg(sock, &msg, MSG_NOSIGNAL)) < 0 ? -1 : 0;
}

/***
 * Serve socket requests from a forwarder until it goes away.  Run in the
 * maker process, after it joined the target network namespace; blocks.
 * @function socket_maker
 * @tparam Fd|int fd this process's end of core.socketpair()
 * @treturn[1] true when the forwarder closed its end
 * @return[2] nil, message, errno
 */
static int
l_socket_maker(lua_State *L)
{
	int sock = rlns_checkfd(L, 1);

	rlns_checknargs(L, 1);
	for (;;) {
		struct fwd_request rq;
		struct fwd_reply rp;
		cleanup_close int fd = -1;
		int kept = 0;
		ssize_t n = TEMP_FAILURE_RETRY(recv(sock, &rq, sizeof rq, 0));

		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return rlns_pushtrue(L);
		if (n < 0)
			return rlns_pushfail(L, errno, "socket maker: recv");
		if ((size_t)n < sizeof rq.tag)
			continue;
		memset(&rp, 0, sizeof rp);
		rp.tag = rq.tag;
		if ((size_t)n != sizeof rq || (rq.type != SOCK_STREAM && rq.type != SOCK_DGRAM) ||
		    (rq.inside.sa.sa_family != AF_INET && rq.inside.sa.sa_family != AF_INET6)) {
			rp.err = EINVAL;
		} else {
			fd = make_socket(&rq, &kept);
			rp.err = fd < 0 ? errno : 0;
			rp.source_kept = kept;
		}
		if (send_reply(sock, &rp, fd) < 0) {
			if (errno == EPIPE || errno == ECONNRESET)
				return rlns_pushtrue(L);
			return rlns_pushfail(L, errno, "socket maker: sendmsg");
		}
	}
}

/* ---- the forwarder's state ------------------------------------------ */

enum kind {
	K_LISTEN = 1, /* a TCP forward's listener (pointer) */
	K_UDP,	      /* a UDP forward's host socket (pointer) */
	K_MAKER,
	K_WAKE,
	K_SIGNAL,
	K_CLIENT, /* a connection's accepted socket (slot) */
	K_INSIDE, /* a connection's or flow's socket from the maker (slot) */
};

struct forward {
	struct forward *next;
	uint32_t key; /* names it in epoll events */
	char *id;
	int udp;
	int fd; /* listener or host UDP socket; -1 once removed */
	int paused;
	int removed;
	union fwd_addr host;
	int has_inside_ip;
	union fwd_addr inside; /* with inside_port */
	int inside_port;
	long long udp_idle_ms;
	long long live, accepted, kept, lost, failed;
};

/* One direction of a TCP connection: src -> pipe -> dst. */
struct dir {
	int src, dst;
	int pr, pw;
	size_t inpipe;
	int pipesz;
	int grown;
	int more;
	int eof;
	int done;
};

struct dgram {
	size_t len;
	char *data;
};

enum { S_PENDING, S_CONNECTING, S_RELAY };

struct conn {
	uint32_t gen;
	int slot;
	int udp;
	int state;
	struct forward *fw;
	union fwd_addr peer; /* the client */
	int client;	     /* TCP: the accepted socket */
	int inside;	     /* from the maker; -1 until it answered */
	int queued;	     /* request still to be sent */
	int qnext;
	struct dir d[2]; /* client->inside, inside->client */
	/* UDP */
	int hnext;
	long long last;
	int nq;
	struct dgram q[UDP_QUEUE];
};

struct forwarder {
	int ep;
	int maker;
	int gone;
	struct forward *fws;
	struct conn **slots;
	int *freelist;
	int cap, nfree, live, flows;
	uint32_t gen;
	int qhead, qtail; /* requests waiting for room on the maker socket */
	int maker_out;
	uint32_t next_key;
	long long now;
	long long pause_until;
	long long next_sweep;
	char *buf;
	int hash[HASH_BUCKETS];
};

/* epoll data: a forward's key, or a connection's generation and slot,
 * above the kind in the low 3 bits */
static uint64_t
ev_of(uint32_t key, enum kind k)
{
	return (uint64_t)key << 32 | (uint64_t)k;
}

static uint64_t
ev_conn(const struct conn *c, enum kind k)
{
	return (uint64_t)c->gen << 32 | (uint64_t)c->slot << 3 | (uint64_t)k;
}

static struct conn *
conn_of(struct forwarder *f, uint64_t tag)
{
	uint32_t slot = (uint32_t)(tag >> 3) & 0x1fffffff;
	struct conn *c;

	if (slot >= (uint32_t)f->cap)
		return NULL;
	c = f->slots[slot];
	return c && c->gen == (uint32_t)(tag >> 32) ? c : NULL;
}

static int
ep_add(struct forwarder *f, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = {.events = events, .data.u64 = data};

	return epoll_ctl(f->ep, EPOLL_CTL_ADD, fd, &ev);
}

static void
ep_mod(struct forwarder *f, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = {.events = events, .data.u64 = data};

	(void)epoll_ctl(f->ep, EPOLL_CTL_MOD, fd, &ev);
}

/* Close a TCP socket with a reset: the peer learns at once it failed. */
static void
close_reset(int *fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (*fd >= 0)
		(void)setsockopt(*fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	rlns_closep(fd);
}

static void
forward_free(struct forward *fw)
{
	rlns_closep(&fw->fd);
	free(fw->id);
	free(fw);
}

static struct conn *
conn_new(struct forwarder *f, struct forward *fw, int udp)
{
	struct conn *c;
	int slot;

	if (f->live >= MAX_SLOTS)
		return NULL;
	if (f->nfree == 0) {
		int cap = f->cap ? f->cap * 2 : 256;
		struct conn **slots;
		int *freelist;

		if (cap > MAX_SLOTS)
			cap = MAX_SLOTS;
		slots = realloc(f->slots, sizeof(struct conn *) * (size_t)cap);
		if (!slots)
			return NULL;
		f->slots = slots;
		freelist = realloc(f->freelist, sizeof *freelist * (size_t)cap);
		if (!freelist)
			return NULL;
		f->freelist = freelist;
		for (int i = cap - 1; i >= f->cap; i--) {
			slots[i] = NULL;
			freelist[f->nfree++] = i;
		}
		f->cap = cap;
	}
	c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	slot = f->freelist[--f->nfree];
	if (++f->gen == 0)
		f->gen = 1;
	c->gen = f->gen;
	c->slot = slot;
	c->udp = udp;
	c->fw = fw;
	c->client = c->inside = -1;
	c->qnext = c->hnext = -1;
	for (int i = 0; i < 2; i++)
		c->d[i].pr = c->d[i].pw = -1;
	f->slots[slot] = c;
	f->live++;
	fw->live++;
	if (udp)
		f->flows++;
	return c;
}

static unsigned
flow_hash(const struct forward *fw, const union fwd_addr *a)
{
	const unsigned char *p;
	size_t n;
	uint32_t h = 2166136261u;
	uint32_t key = fw->key;

	for (size_t i = 0; i < sizeof key; i++)
		h = (h ^ (unsigned char)(key >> (8 * i))) * 16777619u;
	if (a->sa.sa_family == AF_INET) {
		p = (const unsigned char *)&a->in.sin_addr;
		n = sizeof a->in.sin_addr;
		h = (h ^ (a->in.sin_port & 0xff)) * 16777619u;
		h = (h ^ (a->in.sin_port >> 8)) * 16777619u;
	} else {
		p = (const unsigned char *)&a->in6.sin6_addr;
		n = sizeof a->in6.sin6_addr;
		h = (h ^ (a->in6.sin6_port & 0xff)) * 16777619u;
		h = (h ^ (a->in6.sin6_port >> 8)) * 16777619u;
	}
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h % HASH_BUCKETS;
}

static int
same_peer(const union fwd_addr *a, const union fwd_addr *b)
{
	if (a->sa.sa_family != b->sa.sa_family)
		return 0;
	if (a->sa.sa_family == AF_INET)
		return a->in.sin_port == b->in.sin_port &&
		       a->in.sin_addr.s_addr == b->in.sin_addr.s_addr;
	return a->in6.sin6_port == b->in6.sin6_port &&
	       memcmp(&a->in6.sin6_addr, &b->in6.sin6_addr, sizeof a->in6.sin6_addr) == 0;
}

static struct conn *
flow_find(struct forwarder *f, const struct forward *fw, const union fwd_addr *peer)
{
	for (int s = f->hash[flow_hash(fw, peer)]; s >= 0; s = f->slots[s]->hnext)
		if (f->slots[s]->fw == fw && same_peer(&f->slots[s]->peer, peer))
			return f->slots[s];
	return NULL;
}

static void
queue_unlink(struct forwarder *f, struct conn *c)
{
	int prev = -1;

	for (int s = f->qhead; s >= 0; prev = s, s = f->slots[s]->qnext) {
		if (s != c->slot)
			continue;
		if (prev < 0)
			f->qhead = c->qnext;
		else
			f->slots[prev]->qnext = c->qnext;
		if (f->qtail == s)
			f->qtail = prev;
		break;
	}
	c->queued = 0;
	c->qnext = -1;
}

/* Release a connection or flow: its sockets, pipes and slot.  @reset: the
 * TCP sockets are reset rather than closed (an error on either side). */
static void
conn_free(struct forwarder *f, struct conn *c, int reset)
{
	struct forward *fw = c->fw;

	if (c->queued)
		queue_unlink(f, c);
	if (c->udp) {
		int *pp = &f->hash[flow_hash(fw, &c->peer)];

		while (*pp >= 0 && *pp != c->slot)
			pp = &f->slots[*pp]->hnext;
		if (*pp == c->slot)
			*pp = c->hnext;
		for (int i = 0; i < c->nq; i++)
			free(c->q[i].data);
		f->flows--;
	}
	if (reset) {
		close_reset(&c->client);
		close_reset(&c->inside);
	} else {
		rlns_closep(&c->client);
		rlns_closep(&c->inside);
	}
	for (int i = 0; i < 2; i++) {
		rlns_closep(&c->d[i].pr);
		rlns_closep(&c->d[i].pw);
	}
	f->slots[c->slot] = NULL;
	f->freelist[f->nfree++] = c->slot;
	f->live--;
	free(c);
	if (--fw->live == 0 && fw->removed)
		forward_free(fw);
}

/* The inside address for a client @peer of @fw. */
static void
inside_for(const struct forward *fw, const union fwd_addr *peer, union fwd_addr *out)
{
	memset(out, 0, sizeof *out);
	if (fw->has_inside_ip) {
		*out = fw->inside;
		return;
	}
	if (peer->sa.sa_family == AF_INET ||
	    (peer->sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&peer->in6.sin6_addr))) {
		out->in.sin_family = AF_INET;
		out->in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		out->in.sin_port = htons((uint16_t)fw->inside_port);
	} else {
		out->in6.sin6_family = AF_INET6;
		out->in6.sin6_addr = in6addr_loopback;
		out->in6.sin6_port = htons((uint16_t)fw->inside_port);
	}
}

/* Try to send @c's request.  1: sent; 0: no room (try later); -1: the
 * maker is gone. */
static int
request_send(struct forwarder *f, struct conn *c)
{
	struct fwd_request rq;

	memset(&rq, 0, sizeof rq);
	rq.tag = ev_conn(c, 0);
	rq.type = c->udp ? SOCK_DGRAM : SOCK_STREAM;
	rq.client = c->peer;
	inside_for(c->fw, &c->peer, &rq.inside);
	if (TEMP_FAILURE_RETRY(send(f->maker, &rq, sizeof rq, MSG_DONTWAIT | MSG_NOSIGNAL)) ==
	    (ssize_t)sizeof rq)
		return 1;
	if (errno == EAGAIN || errno == ENOBUFS || errno == ENOMEM)
		return 0;
	f->gone = 1;
	return -1;
}

static void
request(struct forwarder *f, struct conn *c)
{
	if (f->qhead < 0 && request_send(f, c) != 0)
		return;
	c->queued = 1;
	c->qnext = -1;
	if (f->qtail >= 0)
		f->slots[f->qtail]->qnext = c->slot;
	else
		f->qhead = c->slot;
	f->qtail = c->slot;
	if (!f->maker_out) {
		f->maker_out = 1;
		ep_mod(f, f->maker, EPOLLIN | EPOLLOUT, ev_of(0, K_MAKER));
	}
}

static void
flush_requests(struct forwarder *f)
{
	while (f->qhead >= 0) {
		struct conn *c = f->slots[f->qhead];

		if (request_send(f, c) <= 0)
			return;
		f->qhead = c->qnext;
		if (f->qhead < 0)
			f->qtail = -1;
		c->queued = 0;
		c->qnext = -1;
	}
	f->maker_out = 0;
	ep_mod(f, f->maker, EPOLLIN, ev_of(0, K_MAKER));
}

/* Stop accepting on every listener for a moment (EMFILE, a full table). */
static void
pause_accepting(struct forwarder *f)
{
	for (struct forward *fw = f->fws; fw; fw = fw->next) {
		if (fw->udp || fw->paused)
			continue;
		ep_mod(f, fw->fd, 0, ev_of(fw->key, K_LISTEN));
		fw->paused = 1;
	}
	f->pause_until = f->now + ACCEPT_PAUSE_MS;
}

static void
resume_accepting(struct forwarder *f)
{
	for (struct forward *fw = f->fws; fw; fw = fw->next) {
		if (!fw->paused)
			continue;
		ep_mod(f, fw->fd, EPOLLIN, ev_of(fw->key, K_LISTEN));
		fw->paused = 0;
	}
	f->pause_until = 0;
}

/* ---- TCP ------------------------------------------------------------ */

static void
on_listen(struct forwarder *f, struct forward *fw)
{
	for (;;) {
		union fwd_addr peer;
		socklen_t len = sizeof peer;
		struct conn *c;
		int one = 1;
		cleanup_close int fd = -1;

		if (f->live >= MAX_SLOTS) {
			pause_accepting(f);
			return;
		}
		memset(&peer, 0, sizeof peer);
		fd = accept4(fw->fd, &peer.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				pause_accepting(f);
			return;
		}
		fw->accepted++;
		c = conn_new(f, fw, 0);
		if (!c) {
			fw->failed++;
			close_reset(&fd);
			pause_accepting(f);
			return;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		c->peer = peer;
		c->client = steal_fd(&fd);
		if (ep_add(f, c->client, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
			   ev_conn(c, K_CLIENT)) < 0) {
			fw->failed++;
			conn_free(f, c, 1);
			continue;
		}
		request(f, c);
	}
}

static int
new_pipe(struct dir *d)
{
	int p[2];

	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	d->pr = p[0];
	d->pw = p[1];
	d->pipesz = fcntl(p[1], F_GETPIPE_SZ);
	if (d->pipesz <= 0)
		d->pipesz = 65536;
	return 0;
}

/*
 * Move what can move in one direction.  Returns 0 when it has to wait
 * (an edge on src or dst will come) or is done, -1 on an error.  The pipe
 * is emptied before it is filled again, so EAGAIN from the fill always
 * means the source has nothing, never that the pipe is full.
 */
static int
pump(struct dir *d)
{
	while (!d->done) {
		ssize_t n;

		if (d->inpipe > 0) {
			n = splice(d->pr, NULL, d->dst, NULL, d->inpipe,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK | (d->more ? SPLICE_F_MORE : 0));
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return errno == EAGAIN ? 0 : -1;
			}
			d->inpipe -= (size_t)n;
			continue;
		}
		if (d->eof) {
			if (shutdown(d->dst, SHUT_WR) < 0 && errno != ENOTCONN)
				return -1;
			d->done = 1;
			break;
		}
		n = splice(d->src, NULL, d->pw, NULL, (size_t)d->pipesz,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -1;
		}
		if (n == 0) {
			d->eof = 1;
			continue;
		}
		d->inpipe = (size_t)n;
		/* A full pipe: a stream is flowing, so more is on its way
		 * (MSG_MORE), and a bigger pipe pays.  Where the user's pipe
		 * allowance is spent, it stays as it is. */
		d->more = n == d->pipesz;
		if (d->more && !d->grown) {
			int sz = fcntl(d->pw, F_SETPIPE_SZ, PIPE_MAX);

			d->grown = 1;
			if (sz > d->pipesz)
				d->pipesz = sz;
		}
	}
	return 0;
}

/* Pump the directions in @which (bit 0: client->inside, bit 1: back). */
static void
relay(struct forwarder *f, struct conn *c, unsigned which)
{
	if (((which & 1) && pump(&c->d[0]) < 0) || ((which & 2) && pump(&c->d[1]) < 0)) {
		conn_free(f, c, 1);
		return;
	}
	if (c->d[0].done && c->d[1].done)
		conn_free(f, c, 0);
}

static void
start_relay(struct forwarder *f, struct conn *c)
{
	int one = 1;

	if (new_pipe(&c->d[0]) < 0 || new_pipe(&c->d[1]) < 0) {
		c->fw->failed++;
		conn_free(f, c, 1);
		return;
	}
	(void)setsockopt(c->inside, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->d[0].src = c->d[1].dst = c->client;
	c->d[0].dst = c->d[1].src = c->inside;
	c->state = S_RELAY;
	relay(f, c, 3);
}

static void
on_tcp_event(struct forwarder *f, struct conn *c, enum kind k, uint32_t events)
{
	if (c->state == S_RELAY) {
		/* a direction waits only for its source's EPOLLIN or its
		 * destination's EPOLLOUT: the other one is left alone */
		unsigned in = k == K_CLIENT ? 1 : 2, out = k == K_CLIENT ? 2 : 1, which = 0;

		if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP))
			which = 3;
		if (events & EPOLLIN)
			which |= in;
		if (events & EPOLLOUT)
			which |= out;
		relay(f, c, which);
	} else if (c->state == S_CONNECTING && k == K_INSIDE &&
		   (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		int err = 0;
		socklen_t len = sizeof err;

		if (getsockopt(c->inside, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err == 0) {
			start_relay(f, c);
		} else {
			c->fw->failed++;
			conn_free(f, c, 1);
		}
	}
}

/* ---- UDP ------------------------------------------------------------ */

static void
flow_send(struct conn *c, const void *data, size_t len)
{
	/* a datagram the inside socket has no room for is dropped, as the
	 * network would */
	(void)TEMP_FAILURE_RETRY(send(c->inside, data, len, MSG_DONTWAIT | MSG_NOSIGNAL));
}

/* How often flows of @fw are checked: a quarter of their idle time,
 * within 10 ms .. 1 s. */
static long long
sweep_step(const struct forward *fw)
{
	long long step = fw->udp_idle_ms / 4;

	return step < 10 ? 10 : step > 1000 ? 1000 : step;
}

static void
on_udp_host(struct forwarder *f, struct forward *fw)
{
	for (int i = 0; i < UDP_BATCH; i++) {
		union fwd_addr peer;
		socklen_t len = sizeof peer;
		struct conn *c;
		ssize_t n;

		memset(&peer, 0, sizeof peer);
		n = TEMP_FAILURE_RETRY(recvfrom(fw->fd, f->buf, UDP_BUF, MSG_DONTWAIT, &peer.sa, &len));
		if (n < 0) {
			if (errno == EAGAIN)
				return;
			continue; /* an ICMP error reported late: nothing to do */
		}
		if (peer.sa.sa_family != AF_INET && peer.sa.sa_family != AF_INET6)
			continue;
		c = flow_find(f, fw, &peer);
		if (!c) {
			unsigned h = flow_hash(fw, &peer);

			c = conn_new(f, fw, 1);
			if (!c)
				continue;
			fw->accepted++;
			c->peer = peer;
			c->hnext = f->hash[h];
			f->hash[h] = c->slot;
			if (!f->next_sweep || f->now + sweep_step(fw) < f->next_sweep)
				f->next_sweep = f->now + sweep_step(fw);
			request(f, c);
			if (f->gone)
				return;
		}
		c->last = f->now;
		if (c->inside >= 0) {
			flow_send(c, f->buf, (size_t)n);
		} else if (c->nq < UDP_QUEUE) {
			char *copy = malloc((size_t)n + 1);

			if (copy) {
				memcpy(copy, f->buf, (size_t)n);
				c->q[c->nq].data = copy;
				c->q[c->nq++].len = (size_t)n;
			}
		}
	}
}

static void
on_udp_inside(struct forwarder *f, struct conn *c)
{
	for (int i = 0; i < UDP_BATCH; i++) {
		ssize_t n = TEMP_FAILURE_RETRY(recv(c->inside, f->buf, UDP_BUF, MSG_DONTWAIT));

		if (n < 0) {
			if (errno == EAGAIN)
				return;
			continue; /* ECONNREFUSED: nobody listens inside (yet) */
		}
		c->last = f->now;
		(void)TEMP_FAILURE_RETRY(sendto(c->fw->fd, f->buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL,
						&c->peer.sa, addr_len(&c->peer)));
	}
}

/* Close the flows idle for longer than their forward's udp_idle_ms. */
static void
sweep_flows(struct forwarder *f)
{
	long long step = 1000;

	for (int s = 0; s < f->cap; s++) {
		struct conn *c = f->slots[s];

		if (!c || !c->udp)
			continue;
		if (c->inside >= 0 && f->now - c->last >= c->fw->udp_idle_ms) {
			conn_free(f, c, 0);
			continue;
		}
		if (sweep_step(c->fw) < step)
			step = sweep_step(c->fw);
	}
	f->next_sweep = f->flows ? f->now + step : 0;
}

/* ---- the maker's replies -------------------------------------------- */

static void
on_made(struct forwarder *f, struct conn *c, const struct fwd_reply *rp, int *fd)
{
	struct forward *fw = c->fw;

	if (rp->err != 0 || *fd < 0) {
		fw->failed++;
		conn_free(f, c, 1);
		return;
	}
	if (rp->source_kept)
		fw->kept++;
	else
		fw->lost++;
	c->inside = steal_fd(fd);
	if (c->udp) {
		if (ep_add(f, c->inside, EPOLLIN, ev_conn(c, K_INSIDE)) < 0) {
			conn_free(f, c, 0);
			return;
		}
		c->state = S_RELAY;
		for (int i = 0; i < c->nq; i++) {
			flow_send(c, c->q[i].data, c->q[i].len);
			free(c->q[i].data);
		}
		c->nq = 0;
		return;
	}
	c->state = S_CONNECTING;
	if (ep_add(f, c->inside, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, ev_conn(c, K_INSIDE)) < 0) {
		fw->failed++;
		conn_free(f, c, 1);
	}
}

static void
on_maker(struct forwarder *f, uint32_t events)
{
	if (events & EPOLLOUT)
		flush_requests(f);
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	while (!f->gone) {
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} u;
		struct fwd_reply rp;
		struct iovec iov = {.iov_base = &rp, .iov_len = sizeof rp};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1,
				     .msg_control = u.buf, .msg_controllen = sizeof u.buf};
		cleanup_close int fd = -1;
		struct conn *c;
		ssize_t n = TEMP_FAILURE_RETRY(recvmsg(f->maker, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));

		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			f->gone = 1;
			return;
		}
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
			    cm->cmsg_len == CMSG_LEN(sizeof(int)) && fd < 0)
				memcpy(&fd, CMSG_DATA(cm), sizeof fd);
		if (n != (ssize_t)sizeof rp)
			continue;
		c = conn_of(f, rp.tag);
		if (!c || c->state != S_PENDING || c->queued)
			continue;
		on_made(f, c, &rp, &fd);
	}
}

/* ---- the Forwarder object ------------------------------------------- */

static struct forwarder *
checkforwarder(lua_State *L, int idx)
{
	struct forwarder *f = luaL_checkudata(L, idx, FORWARDER_META);

	if (f->ep < 0)
		luaL_error(L, "attempt to use a closed forwarder");
	return f;
}

static void
forwarder_release(struct forwarder *f)
{
	for (int s = 0; s < f->cap; s++)
		if (f->slots[s])
			conn_free(f, f->slots[s], 0);
	while (f->fws) {
		struct forward *fw = f->fws;

		f->fws = fw->next;
		forward_free(fw);
	}
	free(f->slots);
	free(f->freelist);
	free(f->buf);
	f->slots = NULL;
	f->freelist = NULL;
	f->buf = NULL;
	f->cap = f->nfree = 0;
	rlns_closep(&f->maker);
	rlns_closep(&f->ep);
}

static int
forwarder_gc(lua_State *L)
{
	forwarder_release(luaL_checkudata(L, 1, FORWARDER_META));
	return 0;
}

/***
 * Release everything: listeners, connections, flows, pipes, the epoll
 * descriptor and the forwarder's copy of the maker socket (the maker sees
 * end of file once the caller's copies are closed too).  Idempotent.
 * @function Forwarder:close
 * @treturn true
 */
static int
forwarder_close(lua_State *L)
{
	forwarder_release(luaL_checkudata(L, 1, FORWARDER_META));
	return rlns_pushtrue(L);
}

static int
forwarder_tostring(lua_State *L)
{
	struct forwarder *f = luaL_checkudata(L, 1, FORWARDER_META);
	int n = 0;

	if (f->ep < 0) {
		lua_pushliteral(L, "Forwarder (closed)");
		return 1;
	}
	for (struct forward *fw = f->fws; fw; fw = fw->next)
		n++;
	lua_pushfstring(L, "Forwarder (%d forwards, %d connections)", n, f->live);
	return 1;
}

/***
 * A forwarder whose inside sockets come from the socket maker at the other
 * end of @maker_fd.  It keeps its own duplicate of the descriptor.
 * @function forwarder
 * @tparam Fd|int maker_fd this process's end of core.socketpair()
 * @treturn[1] Forwarder
 * @return[2] nil, message, errno
 */
static int
l_forwarder(lua_State *L)
{
	int maker = rlns_checkfd(L, 1);
	struct forwarder *f;

	rlns_checknargs(L, 1);
	f = lua_newuserdatauv(L, sizeof *f, 0);
	memset(f, 0, sizeof *f);
	f->ep = f->maker = -1;
	f->qhead = f->qtail = -1;
	for (int i = 0; i < HASH_BUCKETS; i++)
		f->hash[i] = -1;
	luaL_setmetatable(L, FORWARDER_META);
	f->buf = malloc(UDP_BUF);
	if (!f->buf)
		return rlns_pushfail(L, ENOMEM, "forwarder");
	f->maker = fcntl(maker, F_DUPFD_CLOEXEC, 3);
	if (f->maker < 0)
		return rlns_pushfail(L, errno, "dup fd %d", maker);
	f->ep = epoll_create1(EPOLL_CLOEXEC);
	if (f->ep < 0) {
		int err = errno;

		forwarder_release(f);
		return rlns_pushfail(L, err, "epoll_create1");
	}
	if (ep_add(f, f->maker, EPOLLIN, ev_of(0, K_MAKER)) < 0) {
		int err = errno;

		forwarder_release(f);
		return rlns_pushfail(L, err, "epoll_ctl fd %d", maker);
	}
	return 1;
}

static struct forward *
find_forward(struct forwarder *f, const char *id, struct forward ***link)
{
	for (struct forward **pp = &f->fws; *pp; pp = &(*pp)->next) {
		if (strcmp((*pp)->id, id) == 0) {
			if (link)
				*link = pp;
			return *pp;
		}
	}
	return NULL;
}

static const char *
optstringfield(lua_State *L, int idx, const char *key, const char *def)
{
	const char *s;

	if (lua_getfield(L, idx, key) == LUA_TNIL) {
		lua_pop(L, 1);
		return def;
	}
	if (lua_type(L, -1) != LUA_TSTRING)
		luaL_error(L, "bad forward field '%s' (string expected)", key);
	s = lua_tostring(L, -1);
	lua_pop(L, 1); /* still referenced by the table */
	return s;
}

static lua_Integer
intfield(lua_State *L, int idx, const char *key, lua_Integer def, lua_Integer lo, lua_Integer hi)
{
	lua_Integer v;
	int isnum;

	if (lua_getfield(L, idx, key) == LUA_TNIL) {
		lua_pop(L, 1);
		if (def < lo)
			luaL_error(L, "bad forward field '%s' (integer expected)", key);
		return def;
	}
	v = lua_tointegerx(L, -1, &isnum);
	if (!isnum)
		luaL_error(L, "bad forward field '%s' (integer expected)", key);
	if (v < lo || v > hi)
		luaL_error(L, "bad forward field '%s' (out of range)", key);
	lua_pop(L, 1);
	return v;
}

/* "127.0.0.1:80" or "[::1]:80" */
static void
format_endpoint(const union fwd_addr *a, char *buf, size_t size)
{
	char ip[RLNS_ADDRSTRLEN];
	int port;

	rlns_format_addr(&a->sa, ip, sizeof ip, &port);
	snprintf(buf, size, a->sa.sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip, port);
}

/* The host socket of a forward: bound, listening when TCP.  -1 with errno
 * (the bind's own errno when that failed). */
static int
host_socket(union fwd_addr *host, int udp, const char **step)
{
	cleanup_close int fd = socket(host->sa.sa_family,
				      (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	socklen_t len = sizeof *host;
	int one = 1;

	*step = "socket";
	if (fd < 0)
		return -1;
	if (host->sa.sa_family == AF_INET6) {
		/* "::" is both families; a specific address only its own */
		int v6only = !IN6_IS_ADDR_UNSPECIFIED(&host->in6.sin6_addr);

		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only) < 0)
			return -1;
	}
	if (!udp && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		return -1;
	*step = "bind";
	if (bind(fd, &host->sa, addr_len(host)) < 0)
		return -1;
	*step = "listen";
	if (!udp && listen(fd, LISTEN_BACKLOG) < 0)
		return -1;
	*step = "getsockname";
	if (getsockname(fd, &host->sa, &len) < 0)
		return -1;
	return steal_fd(&fd);
}

/***
 * Publish a port: bind and listen on the host address now.
 * @function Forwarder:add
 * @tparam table spec
 *   id (string, unique), proto ("tcp" or "udp"), host_ip (numeric; "::"
 *   takes IPv4 too, any other IPv6 address only IPv6), host_port (0: the
 *   kernel chooses), inside_ip (optional; default 127.0.0.1 for IPv4
 *   clients and ::1 for IPv6 ones), inside_port, udp_idle_ms (optional,
 *   default 60000)
 * @treturn[1] true
 * @treturn[1] int the host port bound
 * @return[2] nil, "bind 127.0.0.1:8080/tcp: Address already in use", errno
 *   (EADDRINUSE, EACCES, EADDRNOTAVAIL; EEXIST for an id in use; EINVAL
 *   for an address that is not numeric)
 */
static int
forwarder_add(lua_State *L)
{
	static const char *const protos[] = {"tcp", "udp", NULL};
	struct forwarder *f = checkforwarder(L, 1);
	const char *id, *host_ip, *inside_ip, *proto;
	lua_Integer host_port, inside_port, idle;
	union fwd_addr host, inside;
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct forward *fw;
	const char *step;
	char where[RLNS_ADDRSTRLEN + 16];
	int udp, port;
	cleanup_close int fd = -1;

	rlns_checknargs(L, 2);
	luaL_checktype(L, 2, LUA_TTABLE);
	id = optstringfield(L, 2, "id", NULL);
	if (!id)
		return luaL_error(L, "bad forward field 'id' (string expected)");
	proto = optstringfield(L, 2, "proto", "tcp");
	for (udp = 0; protos[udp] && strcmp(protos[udp], proto) != 0; udp++)
		;
	if (!protos[udp])
		return luaL_error(L, "bad forward field 'proto' (\"tcp\" or \"udp\" expected)");
	host_ip = optstringfield(L, 2, "host_ip", NULL);
	if (!host_ip)
		return luaL_error(L, "bad forward field 'host_ip' (string expected)");
	inside_ip = optstringfield(L, 2, "inside_ip", NULL);
	host_port = intfield(L, 2, "host_port", -1, 0, 65535);
	inside_port = intfield(L, 2, "inside_port", -1, 1, 65535);
	idle = intfield(L, 2, "udp_idle_ms", 60000, 1, 0x7fffffff);

	if (find_forward(f, id, NULL))
		return rlns_pushfail(L, EEXIST, "forward `%s`", id);
	if (rlns_parse_addr(host_ip, (int)host_port, &ss, &sslen) < 0)
		return rlns_pushfail(L, EINVAL, "host address `%s`", host_ip);
	memset(&host, 0, sizeof host);
	memcpy(&host, &ss, sslen);
	memset(&inside, 0, sizeof inside);
	if (inside_ip) {
		if (rlns_parse_addr(inside_ip, (int)inside_port, &ss, &sslen) < 0)
			return rlns_pushfail(L, EINVAL, "inside address `%s`", inside_ip);
		memcpy(&inside, &ss, sslen);
	}
	fd = host_socket(&host, udp, &step);
	if (fd < 0) {
		int err = errno;

		/* named as asked for (getsockname may have written it) */
		if (rlns_parse_addr(host_ip, (int)host_port, &ss, &sslen) == 0)
			memcpy(&host, &ss, sslen);
		format_endpoint(&host, where, sizeof where);
		return rlns_pushfail(L, err, "%s %s/%s", step, where, proto);
	}
	fw = calloc(1, sizeof *fw);
	if (fw)
		fw->id = strdup(id);
	if (!fw || !fw->id) {
		free(fw);
		return rlns_pushfail(L, ENOMEM, "forward `%s`", id);
	}
	fw->udp = udp;
	fw->key = ++f->next_key;
	fw->host = host;
	fw->has_inside_ip = inside_ip != NULL;
	fw->inside = inside;
	fw->inside_port = (int)inside_port;
	fw->udp_idle_ms = idle;
	fw->fd = steal_fd(&fd);
	if (ep_add(f, fw->fd, EPOLLIN, ev_of(fw->key, udp ? K_UDP : K_LISTEN)) < 0) {
		int err = errno;

		forward_free(fw);
		return rlns_pushfail(L, err, "epoll_ctl");
	}
	if (f->pause_until && !udp) {
		ep_mod(f, fw->fd, 0, ev_of(fw->key, K_LISTEN));
		fw->paused = 1;
	}
	fw->next = f->fws;
	f->fws = fw;
	rlns_format_addr(&host.sa, where, sizeof where, &port);
	lua_pushboolean(L, 1);
	lua_pushinteger(L, port);
	return 2;
}

/***
 * Unpublish a port: its listener (or host UDP socket) is closed at once.
 * Established TCP connections of that forward go on until they end; its
 * UDP flows end now.  No other forward's connection is touched.
 * @function Forwarder:remove
 * @tparam string id
 * @treturn[1] true
 * @return[2] nil, message, ENOENT for an unknown id
 */
static int
forwarder_remove(lua_State *L)
{
	struct forwarder *f = checkforwarder(L, 1);
	const char *id = luaL_checkstring(L, 2);
	struct forward **link = NULL;
	struct forward *fw;

	rlns_checknargs(L, 2);
	fw = find_forward(f, id, &link);
	if (!fw || !link)
		return rlns_pushfail(L, ENOENT, "forward `%s`", id);
	*link = fw->next;
	fw->next = NULL;
	fw->removed = 1;
	rlns_closep(&fw->fd);
	if (fw->udp) {
		/* the flows' replies would leave through the socket just
		 * closed: they end here */
		for (int s = 0; s < f->cap && fw->live > 0; s++) {
			struct conn *c = f->slots[s];

			if (c && c->fw == fw) {
				int last = fw->live == 1;

				conn_free(f, c, 0);
				if (last)
					return rlns_pushtrue(L); /* fw is freed */
			}
		}
	}
	if (fw->live == 0)
		forward_free(fw);
	return rlns_pushtrue(L);
}

/***
 * The forwards, in no particular order.
 * @function Forwarder:list
 * @treturn table a list of { id, proto, host_ip, host_port, inside_ip
 *   (when given), inside_port, connections (live; UDP: flows), accepted
 *   (total; UDP: flows made), source_kept, source_lost (totals of inside
 *   sockets made with / without the client's address), failed (the maker
 *   or the inside connect failed; the client was reset) }
 */
static int
forwarder_list(lua_State *L)
{
	struct forwarder *f = checkforwarder(L, 1);
	int i = 0;

	rlns_checknargs(L, 1);
	lua_newtable(L);
	for (struct forward *fw = f->fws; fw; fw = fw->next) {
		char ip[RLNS_ADDRSTRLEN];
		int port;

		lua_createtable(L, 0, 11);
		lua_pushstring(L, fw->id);
		lua_setfield(L, -2, "id");
		lua_pushstring(L, fw->udp ? "udp" : "tcp");
		lua_setfield(L, -2, "proto");
		lua_pushstring(L, rlns_format_addr(&fw->host.sa, ip, sizeof ip, &port));
		lua_setfield(L, -2, "host_ip");
		rlns_setintfield(L, "host_port", port);
		if (fw->has_inside_ip) {
			lua_pushstring(L, rlns_format_addr(&fw->inside.sa, ip, sizeof ip, NULL));
			lua_setfield(L, -2, "inside_ip");
		}
		rlns_setintfield(L, "inside_port", fw->inside_port);
		rlns_setintfield(L, "connections", fw->live);
		rlns_setintfield(L, "accepted", fw->accepted);
		rlns_setintfield(L, "source_kept", fw->kept);
		rlns_setintfield(L, "source_lost", fw->lost);
		rlns_setintfield(L, "failed", fw->failed);
		lua_seti(L, -2, ++i);
	}
	return 1;
}

enum run_result { R_NONE, R_WAKE, R_TIMEOUT, R_SIGNAL, R_GONE };

static void
dispatch(struct forwarder *f, const struct epoll_event *ev, int sigfd, int *woke, int *signo)
{
	uint64_t u = ev->data.u64;
	enum kind k = (enum kind)(u & 7);
	struct conn *c;

	switch (k) {
	case K_WAKE:
		*woke = 1;
		break;
	case K_SIGNAL: {
		struct signalfd_siginfo si;

		if (!*signo && read(sigfd, &si, sizeof si) == (ssize_t)sizeof si)
			*signo = (int)si.ssi_signo;
		break;
	}
	case K_MAKER:
		on_maker(f, ev->events);
		break;
	case K_LISTEN:
	case K_UDP:
		for (struct forward *fw = f->fws; fw; fw = fw->next) {
			if (fw->key != (uint32_t)(u >> 32))
				continue;
			if (k == K_LISTEN)
				on_listen(f, fw);
			else
				on_udp_host(f, fw);
			break;
		}
		break;
	case K_CLIENT:
	case K_INSIDE:
		c = conn_of(f, u);
		if (!c)
			break;
		if (c->udp) {
			if (k == K_INSIDE && c->state == S_RELAY)
				on_udp_inside(f, c);
		} else {
			on_tcp_event(f, c, k, ev->events);
		}
		break;
	}
}

/* Milliseconds epoll may sleep: until the caller's deadline, the next
 * flow sweep or the end of an accept pause, whichever comes first. */
static int
wait_ms(const struct forwarder *f, long long deadline)
{
	long long until = deadline;

	if (f->next_sweep && (until < 0 || f->next_sweep < until))
		until = f->next_sweep;
	if (f->pause_until && (until < 0 || f->pause_until < until))
		until = f->pause_until;
	if (until < 0)
		return -1;
	if (until <= f->now)
		return 0;
	return until - f->now > 0x7fffffff ? 0x7fffffff : (int)(until - f->now);
}

static enum run_result
run_loop(struct forwarder *f, long long deadline, int sigfd, int *signo)
{
	struct epoll_event evs[MAX_EVENTS];

	for (;;) {
		int woke = 0;
		int n;

		f->now = rlns_now_ms();
		n = epoll_wait(f->ep, evs, MAX_EVENTS, wait_ms(f, deadline));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return R_NONE;
		}
		f->now = rlns_now_ms();
		for (int i = 0; i < n && !f->gone; i++)
			dispatch(f, &evs[i], sigfd, &woke, signo);
		if (f->pause_until && f->now >= f->pause_until)
			resume_accepting(f);
		if (f->next_sweep && f->now >= f->next_sweep)
			sweep_flows(f);
		if (f->gone)
			return R_GONE;
		if (*signo)
			return R_SIGNAL;
		if (woke)
			return R_WAKE;
		if (deadline >= 0 && f->now >= deadline)
			return R_TIMEOUT;
	}
}

/***
 * Move bytes until something needs the caller.  The state (forwards,
 * connections) persists between calls; connections flow only while run()
 * runs.
 * @function Forwarder:run
 * @tparam[opt] Fd|int wake_fd run() returns "wake" once it is readable
 *   (it is not read)
 * @tparam[opt] int timeout_ms nil or negative: no limit
 * @tparam[opt] Signals signals from core.block_signals
 * @treturn[1] string "wake", "timeout" or "signal"
 * @treturn[1] int the signal number (after "signal")
 * @return[2] nil, "the socket maker is gone", EPIPE
 * @return[3] nil, message, errno
 */
static int
forwarder_run(lua_State *L)
{
	struct forwarder *f = checkforwarder(L, 1);
	int wake = lua_isnoneornil(L, 2) ? -1 : rlns_checkfd(L, 2);
	lua_Integer timeout = luaL_opt(L, luaL_checkinteger, 3, -1);
	int sigfd = rlns_signals_fd(L, 4);
	long long deadline = timeout >= 0 ? rlns_now_ms() + timeout : -1;
	sigset_t pipe_set, old, pending;
	enum run_result r;
	int signo = 0, err = 0, was_pending;

	rlns_checknargs(L, 4);
	if (f->gone)
		return rlns_pushfail(L, EPIPE, "the socket maker is gone");
	if (wake >= 0 && ep_add(f, wake, EPOLLIN, ev_of(0, K_WAKE)) < 0)
		return rlns_pushfail(L, errno, "epoll_ctl wake fd %d", wake);
	if (sigfd >= 0 && ep_add(f, sigfd, EPOLLIN, ev_of(0, K_SIGNAL)) < 0) {
		err = errno;
		if (wake >= 0)
			(void)epoll_ctl(f->ep, EPOLL_CTL_DEL, wake, NULL);
		return rlns_pushfail(L, err, "epoll_ctl signal fd %d", sigfd);
	}
	/* splice(2) into a socket whose peer is gone raises SIGPIPE: it is
	 * held back for the run and taken back afterwards, so the caller's
	 * mask and dispositions stay theirs */
	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	was_pending = sigismember(&pending, SIGPIPE);
	sigprocmask(SIG_BLOCK, &pipe_set, &old);
	r = run_loop(f, deadline, sigfd, &signo);
	err = errno;
	sigpending(&pending);
	if (!was_pending && sigismember(&pending, SIGPIPE)) {
		static const struct timespec zero = {0, 0};

		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (wake >= 0)
		(void)epoll_ctl(f->ep, EPOLL_CTL_DEL, wake, NULL);
	if (sigfd >= 0)
		(void)epoll_ctl(f->ep, EPOLL_CTL_DEL, sigfd, NULL);
	switch (r) {
	case R_WAKE:
		lua_pushliteral(L, "wake");
		return 1;
	case R_TIMEOUT:
		lua_pushliteral(L, "timeout");
		return 1;
	case R_SIGNAL:
		lua_pushliteral(L, "signal");
		lua_pushinteger(L, signo);
		return 2;
	case R_GONE:
		return rlns_pushfail(L, EPIPE, "the socket maker is gone");
	default:
		return rlns_pushfail(L, err, "epoll_wait");
	}
}

static const luaL_Reg forwarder_metameth[] = {
	{"__index", NULL},
	{"__gc", forwarder_gc},
	{"__close", forwarder_gc},
	{"__tostring", forwarder_tostring},
	{NULL, NULL},
};

static const luaL_Reg forwarder_meth[] = {
	{"add", forwarder_add},
	{"remove", forwarder_remove},
	{"list", forwarder_list},
	{"run", forwarder_run},
	{"close", forwarder_close},
	{NULL, NULL},
};

static const luaL_Reg forward_funcs[] = {
	{"socket_maker", l_socket_maker},
	{"forwarder", l_forwarder},
	{NULL, NULL},
};

void
rlns_open_forward(lua_State *L)
{
	luaL_newmetatable(L, FORWARDER_META);
	luaL_setfuncs(L, forwarder_metameth, 0);
	luaL_newlibtable(L, forwarder_meth);
	luaL_setfuncs(L, forwarder_meth, 0);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
	luaL_setfuncs(L, forward_funcs, 0);
}
