/* Starts the real inferd binary on loopback for integration tests: a random free TCP port, an
 * ipc socket in a temp dir, a config file written for the test, stderr captured to a file. */
#ifndef INFERD_TESTS_DAEMON_FIXTURE_H
#define INFERD_TESTS_DAEMON_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>

#include "frame.h"
#include "inferd-client.h"

struct test_daemon {
	pid_t pid;
	char dir[128];
	char tcp_url[64];
	char ipc_url[192];
	char conf_path[192];
	char log_path[192];
};

/* Starts a daemon whose config has its [server] listen lines followed by extra (more [server]
 * keys first, then other sections; may be NULL), and waits until it answers Health.
 * api_key: sent by the readiness probe (NULL when the daemon has no keys). */
void td_start(struct test_daemon *d, const char *extra, const char *api_key);
/* Sends SIGTERM and waits. @return the exit status, or -1 when killed by a signal. */
int td_stop(struct test_daemon *d);
/* Sends a signal without waiting. */
void td_signal(struct test_daemon *d, int sig);
/* Waits for exit. @return the exit status, or -1. */
int td_wait(struct test_daemon *d);
/* Removes the temp dir. */
void td_cleanup(struct test_daemon *d);
/* @return whether the daemon's log contains text. */
bool td_log_contains(const struct test_daemon *d, const char *text);

/* A client connected to the daemon's tcp (ipc = false) or ipc address. */
struct inferd_client *td_client(const struct test_daemon *d, bool ipc, const char *api_key);

/* Runs inferd with the given arguments to completion (stderr to a file).
 * @return the exit status; the stderr text in out (NUL-terminated). */
int td_run_inferd(char *const argv_tail[], char *out, size_t outlen);

/* @return a free loopback TCP port. */
int td_free_port(void);

/* Raw access for bad-input tests: a raw REQ socket connected to url. */
int td_raw_socket(const char *url);
/* Sends bytes with SP request id reqid. */
void td_raw_send(int sock, uint32_t reqid, const void *buf, size_t len);
/* Receives one frame (NULL on timeout) and the request id it answered. */
inferd_frame *td_raw_recv(int sock, int timeout_ms, uint32_t *reqid);
/* Packs and sends a frame. */
void td_raw_send_frame(int sock, uint32_t reqid, const inferd_frame *f);

#endif
