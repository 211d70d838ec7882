/* Streaming calls of inferctl (generate, image): start, poll to the end, Ctrl-C cancels. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "inferctl.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
	(void)sig;
	interrupted++;
}

double ctl_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int ctl_stream_call(struct ctl *ctl, int method, const ProtobufCMessage *req, inferd_reply_fn fn,
                    void *arg, bool (*finished)(void *arg), uint64_t *call_id)
{
	struct sigaction sa = { .sa_handler = on_sigint }, old_sa;
	struct inferd_call_options o = ctl_call_options(ctl);
	bool handler = false;
	int rc, seen = 0;

	*call_id = 0;
	interrupted = 0;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0; /* no SA_RESTART: the poll returns at once */
	if (sigaction(SIGINT, &sa, &old_sa) == 0)
		handler = true;
	rc = inferd_client_start_msg(ctl->client, method, req, &o, fn, arg, call_id);
	if (rc < 0) {
		ctl_err(ctl, "cannot start the call: %s", strerror(-rc));
		rc = 1;
		goto out;
	}
	rc = 0;
	while (!finished(arg)) {
		int pr = inferd_client_poll(ctl->client, 200);
		if (pr < 0 && pr != -EINTR) {
			ctl_err(ctl, "polling failed: %s", strerror(-pr));
			rc = CTL_EXIT_CONNECT;
			goto out;
		}
		if (interrupted > seen) {
			seen = interrupted;
			fflush(stdout);
			if (seen >= 2) {
				ctl_err(ctl, "interrupted again: quitting without waiting");
				rc = CTL_EXIT_CANCELLED;
				goto out;
			}
			ctl_err(ctl, "cancelling call %llu (Ctrl-C again to quit at once)",
			        (unsigned long long)*call_id);
			inferd_client_cancel(ctl->client, *call_id);
		}
	}
out:
	if (handler)
		sigaction(SIGINT, &old_sa, NULL);
	return rc;
}
