/*
 * title.c - a fixed process title in place of the command line.
 *
 * /proc/<pid>/cmdline, which every user's ps reads, is not a copy: the
 * kernel reads it from the process's own memory, the area exec laid argv
 * out in ([arg_start, arg_end) in /proc/self/stat).  A long-lived process
 * forked from a command that had a secret in its arguments (a token, a
 * password) would show it for as long as it lives.  PR_SET_MM could point
 * the kernel elsewhere but needs CAP_SYS_RESOURCE; the area itself is
 * ordinary writable memory, so we overwrite it in place.
 *
 * Only for a forked child that never returns to its program's main (the
 * holder): the program's own argv strings live in that area too.
 */
#include "rlns.h"

#include <fcntl.h>
#include <string.h>

/* Field @want of /proc/self/stat as an unsigned number. */
static int
stat_field(const char *buf, int want, unsigned long *out)
{
	const char *p = strrchr(buf, ')');
	unsigned long v = 0;
	int field;

	/* comm may hold spaces and parentheses: fields start after the last ')'. */
	if (p == NULL || p[1] != ' ')
		return -1;
	p += 2;
	for (field = 3; field < want && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (p == NULL || *p < '0' || *p > '9')
		return -1;
	/* Digits by hand: no locale, nothing a forked child should avoid. */
	for (; *p >= '0' && *p <= '9'; p++)
		v = v * 10 + (unsigned long)(*p - '0');
	*out = v;
	return 0;
}

/**
 * rlns_set_proctitle() - make /proc/self/cmdline read @title.
 *
 * The title is truncated to what the argv area holds.  Everything after it
 * is zeroed, so nothing of the old arguments stays readable, except the
 * area's last byte: the kernel takes a non-NUL byte there to mean "the
 * title was rewritten" and reports only up to the first NUL, so cmdline is
 * exactly the title as if it had been the whole command (`pgrep -x -f`
 * finds it; ps shows no trailing blanks).  That first NUL is always inside
 * the area, so the environment after it is never reported.
 * Returns 0, or -1 with errno (EIO when /proc/self/stat cannot be parsed,
 * ENOTSUP when the kernel does not report the area).
 */
int
rlns_set_proctitle(const char *title)
{
	cleanup_close int fd = -1;
	char buf[2048];
	unsigned long start, end;
	size_t len, n;
	ssize_t got;
	char *area;

	fd = TEMP_FAILURE_RETRY(open("/proc/self/stat", O_RDONLY | O_CLOEXEC));
	if (fd < 0)
		return -1;
	got = rlns_read_full(fd, buf, sizeof buf - 1);
	if (got < 0)
		return -1;
	buf[got] = '\0';
	/* arg_start and arg_end are fields 48 and 49 (Linux 3.5 and later). */
	if (stat_field(buf, 48, &start) < 0 || stat_field(buf, 49, &end) < 0) {
		errno = EIO;
		return -1;
	}
	if (start == 0 || end <= start) {
		errno = ENOTSUP;
		return -1;
	}
	/* the kernel reports the area as a number: an address of ours */
	area = (char *)start; /* NOLINT(performance-no-int-to-ptr) */
	len = end - start;
	n = strlen(title);
	if (len < 2) {
		memset(area, 0, len);
		return 0;
	}
	if (n > len - 2)
		n = len - 2;
	memmove(area, title, n);
	memset(area + n, 0, len - n);
	area[len - 1] = ' ';
	return 0;
}
