/* Service-manager notifications (systemd's sd_notify protocol through libsystemd): readiness,
 * stopping, status text and the watchdog. No-ops when NOTIFY_SOCKET is unset or the daemon was
 * built without libsystemd. */
#ifndef INFERD_SERVER_NOTIFY_H
#define INFERD_SERVER_NOTIFY_H

#include <stdint.h>

void notify_ready(const char *status);
void notify_stopping(const char *status);
void notify_status(const char *status);
void notify_watchdog(void);
/* @return the watchdog interval in microseconds the manager asked for, or 0. */
uint64_t notify_watchdog_usec(void);

#endif
