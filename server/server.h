/* The inferd daemon: listeners, calls, methods and the event loop that drives them.
 *
 * One thread runs the loop. inferd_server_new() binds every listen address (and fails with a
 * message naming the address when one cannot be bound); inferd_server_run() serves until
 * SIGTERM/SIGINT and a drain, then returns the process exit code.
 */
#ifndef INFERD_SERVER_SERVER_H
#define INFERD_SERVER_SERVER_H

#include <stddef.h>

#include "config.h"

struct inferd_server;

/* @return 0 and *out (free with inferd_server_free()), or a negative errno with err set. The
 * config must outlive the server. */
int inferd_server_new(const struct inferd_config *cfg, struct inferd_server **out, char *err,
                      size_t errlen);
void inferd_server_free(struct inferd_server *srv);

/* Runs the loop until the daemon has drained. @return the exit status (0 after a drain). */
int inferd_server_run(struct inferd_server *srv);

#endif
