/* sd_notify wrappers. */
#include "notify.h"

#include "inferd-config.h"

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

void notify_ready(const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void notify_stopping(const char *status)
{
	sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status);
}

void notify_status(const char *status)
{
	sd_notifyf(0, "STATUS=%s", status);
}

void notify_watchdog(void)
{
	sd_notify(0, "WATCHDOG=1");
}

uint64_t notify_watchdog_usec(void)
{
	uint64_t usec = 0;
	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}
#else
void notify_ready(const char *status) { (void)status; }
void notify_stopping(const char *status) { (void)status; }
void notify_status(const char *status) { (void)status; }
void notify_watchdog(void) {}
uint64_t notify_watchdog_usec(void) { return 0; }
#endif
