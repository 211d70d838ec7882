/* The nanomsg endpoint under socket activation: the glue between activation.h (the passed
 * 'native' socket), the daemon's listen addresses and relay.h.
 *
 * When the manager passed an AF_UNIX socket named 'native', the daemon binds nanomsg on a
 * private path, $RUNTIME_DIRECTORY/native-relay.sock (or a fresh directory under $TMPDIR,
 * /tmp by default, when RUNTIME_DIRECTORY is unset), and relays the passed socket's
 * connections to it. A listen address ipc://P where P is the passed socket's own path is
 * dropped (nanomsg would find the path in use): the relay serves it.
 *
 * Functions return 0 or a negative errno with a message.
 */
#ifndef INFERD_SERVER_NATIVE_ACTIVATION_H
#define INFERD_SERVER_NATIVE_ACTIVATION_H

#include <stddef.h>

struct event_base;
struct inferd_config;
struct native_activation;

/* Takes the 'native' socket if one was passed (after activation_init()) and rewrites
 * cfg->listen. @return 0 and *out (NULL when no such socket was passed; else free with
 * native_activation_free()), or a negative errno with a message. A passed socket of the
 * wrong kind is logged as an error and ignored. */
int native_activation_prepare(struct inferd_config *cfg, struct native_activation **out,
                              char *err, size_t errlen);
/* Starts relaying on base, once nanomsg listens on the private path. Connections that queued
 * on the passed socket meanwhile are accepted once the loop runs. */
int native_activation_start(struct native_activation *na, struct event_base *base, char *err,
                            size_t errlen);
/* Stops relaying; removes the private socket file (and the directory if it made one).
 * Never unlinks the passed socket. Accepts NULL. */
void native_activation_free(struct native_activation *na);

#endif
