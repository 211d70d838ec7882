/* A byte relay from a listening AF_UNIX stream socket (the one socket activation passed) to
 * the daemon's own nanomsg ipc socket.
 *
 * nanomsg cannot adopt an fd that is already listening, so for every connection accepted on
 * the passed socket the relay connects to the private ipc path where nanomsg listens and
 * copies bytes both ways. The SP handshake and nanomsg's ipc framing pass through unchanged,
 * so any nanomsg or NNG client works. Each direction buffers at most RELAY_HIGH_WATER bytes:
 * past that the relay stops reading the sending side until the other side drained half of
 * it. When either side closes or fails, the other is closed too (after what was already read
 * from the closing side has been written out).
 *
 * Loop thread only. Functions return 0 or a negative errno; constructors write a message.
 */
#ifndef INFERD_SERVER_RELAY_H
#define INFERD_SERVER_RELAY_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct relay;

#define RELAY_HIGH_WATER (1u << 20)  /* bytes per direction per connection */

struct relay_stats {
	uint64_t accepted;       /* connections accepted */
	uint64_t failed;         /* connections dropped because the private socket refused */
	uint64_t active;         /* open now */
	uint64_t bytes_up, bytes_down;  /* client to daemon, daemon to client */
};

/* Starts accepting on listen_fd (taken over: closed by relay_free()) and relays each
 * connection to the AF_UNIX stream socket at target_path.
 * @return 0 and *out (free with relay_free()), or a negative errno with a message. */
int relay_new(struct event_base *base, int listen_fd, const char *target_path,
              struct relay **out, char *err, size_t errlen);
/* Closes the passed socket and every relayed connection. Accepts NULL. */
void relay_free(struct relay *r);
void relay_get_stats(const struct relay *r, struct relay_stats *out);

#endif
