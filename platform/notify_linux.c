/* notify_linux.c - the sd_notify datagram by hand; see notify.h. */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static struct sockaddr_un g_addr;
static socklen_t g_addr_len;     /* 0 = no notify socket */
static int64_t g_watchdog_ms;

void notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	size_t n;

	g_addr_len = 0;
	g_watchdog_ms = 0;
	if (path && (path[0] == '/' || path[0] == '@') && (n = strlen(path)) < sizeof(g_addr.sun_path)) {
		memset(&g_addr, 0, sizeof(g_addr));
		g_addr.sun_family = AF_UNIX;
		memcpy(g_addr.sun_path, path, n);
		if (path[0] == '@')
			g_addr.sun_path[0] = '\0';   /* abstract namespace */
		g_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
	}
	if (usec && (!pid || strtol(pid, NULL, 10) == (long)getpid())) {
		long long us = strtoll(usec, NULL, 10);
		if (us > 0)
			g_watchdog_ms = us / 1000 > 0 ? us / 1000 : 1;
	}
}

bool notify_enabled(void)
{
	return g_addr_len != 0;
}

int64_t notify_watchdog_ms(void)
{
	return g_addr_len ? g_watchdog_ms : 0;
}

void notify_send(const char *text)
{
	int fd;

	if (!g_addr_len)
		return;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return;
	if (sendto(fd, text, strlen(text), MSG_NOSIGNAL, (const struct sockaddr *)&g_addr, g_addr_len) < 0)
		(void)errno;
	close(fd);
}
