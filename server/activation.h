/* Sockets handed over by the service manager (systemd socket activation: LISTEN_FDS,
 * LISTEN_PID, LISTEN_FDNAMES, read with libsystemd's sd_listen_fds_with_names()).
 *
 * The daemon knows two names (FileDescriptorName= in the .socket unit):
 *   native  an AF_UNIX stream socket for the nanomsg protocol; nanomsg cannot adopt a listening
 *           fd, so the daemon binds nanomsg on a private ipc path and relays each connection
 *           accepted here to it (relay.h; wiring in main.c)
 *   http    any listening stream socket, served by evhttp instead of [http] listen (http.c)
 * A socket with another name, or of the wrong kind, is logged as an error and closed.
 *
 * Process-wide state, set up once by main() before the loop exists; loop thread only after.
 * Functions return 0 or a negative errno. Without libsystemd the daemon ignores LISTEN_FDS
 * (with a warning) and nothing is ever activated.
 */
#ifndef INFERD_SERVER_ACTIVATION_H
#define INFERD_SERVER_ACTIVATION_H

#include <stddef.h>

enum activation_kind {
	ACTIVATION_UNIX_STREAM,   /* AF_UNIX, SOCK_STREAM, listening */
	ACTIVATION_ANY_STREAM,    /* any family, SOCK_STREAM, listening */
};

/* Reads and unsets the LISTEN_* variables; remembers the sockets passed to this process.
 * @return the number of sockets passed (0 when not activated), or a negative errno with a
 * message (LISTEN_FDS set but unreadable). */
int activation_init(char *err, size_t errlen);

/* Takes the socket named name: the caller owns the fd afterwards.
 * @return the fd; -ENOENT when no socket of that name was passed; -EPROTOTYPE with a message
 * (the socket is closed) when it is not of the expected kind. */
int activation_take(const char *name, enum activation_kind kind, char *err, size_t errlen);

/* Logs an error for, and closes, every socket nobody took (an unknown name, or a known one
 * whose feature is off). */
void activation_close_unused(void);

/* Writes a listening socket's local address for logs: "unix:/run/inferd.sock",
 * "127.0.0.1:8080", "[::1]:8080". For AF_UNIX, path (when not NULL) gets the bare path. */
void activation_describe(int fd, char *out, size_t outlen, char *path, size_t pathlen);

/* @return 1 when fd is an AF_INET/AF_INET6 socket bound to a non-loopback address, else 0. */
int activation_is_remote_inet(int fd);

#endif
