/* notify.h - tell a service manager how we are (systemd's notify protocol).
 *
 * The protocol is one datagram of "KEY=value\n" lines on the AF_UNIX socket
 * named by $NOTIFY_SOCKET (a leading '@' means the abstract namespace);
 * sd_notify(3) documents it. No libsystemd needed: without $NOTIFY_SOCKET
 * (no systemd, or Type= other than notify) every call does nothing, so
 * boards without systemd build and run the same binary. */
#ifndef M2Z_NOTIFY_H
#define M2Z_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Read $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID once (at start). */
void notify_init(void);
/* True when a notify socket was given. */
bool notify_enabled(void);
/* Watchdog interval asked for by the service manager in ms (WatchdogSec=),
 * 0 when none (or WATCHDOG_PID names another process). Ping at half of it. */
int64_t notify_watchdog_ms(void);
/* Send one datagram, e.g. "READY=1\nSTATUS=forwarding". Never blocks;
 * errors are ignored (the manager may be gone). */
void notify_send(const char *text);

#endif
