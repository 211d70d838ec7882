/* libinferd-client: the C client library of the inferd.v1 protocol.
 *
 * A client holds one nanomsg raw REQ socket per endpoint (tcp:// or ipc://) and any number of
 * calls in flight. Each call goes to one endpoint (round robin, or the one asked for) and its
 * reply frames are delivered, in order, to the call's callback from inferd_client_poll() (or
 * from the blocking helpers, which poll for you). A client is not thread-safe: use it from one
 * thread at a time, or one client per thread.
 *
 * Failover: a round-robin call skips an endpoint it cannot send to (not connected, daemon
 * gone). When a daemon refuses a round-robin call with UNAVAILABLE before any other frame (it
 * is draining), the library sends the call to the next endpoint instead of ending it, and
 * skips the refusing endpoint for a second. Calls already running on a daemon that dies are
 * not moved: they end by their deadline.
 *
 * Statuses: every call ends with exactly one final frame whose status is a StatusCode
 * (INFERD__V1__STATUS_CODE__STATUS_*). The library makes the final frame itself when the daemon
 * cannot answer: UNAVAILABLE when no endpoint could be reached in time, DEADLINE_EXCEEDED when
 * the deadline passed without an answer, DATA_LOSS when a reply frame went missing,
 * CANCELLED when a call is cancelled before it was sent.
 *
 * Errors of the functions themselves: 0 or a negative errno-style code.
 */
#ifndef INFERD_CLIENT_H
#define INFERD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "inferd.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

struct inferd_client;

struct inferd_client_options {
	const char *api_key;          /* sent as metadata "api-key"; NULL for none */
	const char *client_name;      /* sent as metadata "client"; NULL for none */
	uint64_t default_deadline_ms; /* for calls that give none; 0 = no deadline */
	int connect_timeout_ms;       /* how long an unsent call waits for a connection; 0 = 5000 */
	/* Liveness promise sent with every call (Frame.keepalive_ms): while calls are in flight,
	 * inferd_client_poll() sends a KeepAlive frame on their endpoint every keepalive_ms / 3,
	 * so the daemon can tell a client that went away (and free its work) from a slow one.
	 * A client that stops polling for 3 x keepalive_ms gets its calls CANCELLED.
	 * 0 = 10000 ms; < 0 = no promise (calls then end only by deadline or Cancel). */
	int keepalive_ms;
};

struct inferd_call_options {
	uint64_t deadline_ms;         /* 0 = the client's default */
	int endpoint;                 /* index into the client's URLs, or -1 for round robin */
};

#define INFERD_CALL_OPTIONS_INIT { .deadline_ms = 0, .endpoint = -1 }

/* One reply frame, valid only during the callback. */
struct inferd_reply {
	uint64_t call_id;
	int method;
	const uint8_t *payload;       /* the method's reply message, serialized */
	size_t payload_len;
	uint32_t seq;
	bool end_of_stream;           /* the call's last frame */
	int status;                   /* final status (meaningful when end_of_stream) */
	const char *status_message;   /* never NULL */
	bool local;                   /* made by the library, not received */
};

/* Called for every frame of a call, last one included. Return 0 to go on; non-zero asks the
 * daemon to cancel the call (the callback still receives the final frame). */
typedef int (*inferd_reply_fn)(const struct inferd_reply *reply, void *arg);

/* Creates a client connected to every URL (connections are made in the background and
 * re-made when lost). opts may be NULL. @return 0 and *out (free with inferd_client_free()),
 * or a negative errno with a message in err. */
int inferd_client_new(const char *const *urls, size_t n_urls,
                      const struct inferd_client_options *opts, struct inferd_client **out,
                      char *err, size_t errlen);

/* Frees the client; calls still in flight are abandoned without callbacks. NULL is fine. */
void inferd_client_free(struct inferd_client *c);

/* ---- non-blocking use ------------------------------------------------------------------- */

/* Starts a call: payload is the method's serialized request (may be NULL for an empty one).
 * @return 0 and *call_id (may be NULL), or -EINVAL / -ENOMEM. */
int inferd_client_start(struct inferd_client *c, int method, const void *payload, size_t len,
                        const struct inferd_call_options *opts, inferd_reply_fn fn, void *arg,
                        uint64_t *call_id);

/* Starts a call whose request is a protobuf-c message. */
int inferd_client_start_msg(struct inferd_client *c, int method, const ProtobufCMessage *req,
                            const struct inferd_call_options *opts, inferd_reply_fn fn,
                            void *arg, uint64_t *call_id);

/* Waits up to timeout_ms (-1 = until something happens, 0 = do not wait) for reply frames and
 * delivers them; also retries unsent calls and ends overdue ones.
 * @return the number of frames delivered (>= 0) or a negative errno. */
int inferd_client_poll(struct inferd_client *c, int timeout_ms);

/* Asks the daemon to cancel a call in flight. The call ends with CANCELLED through its
 * callback. @return 0, or -ENOENT when no such call is in flight. */
int inferd_client_cancel(struct inferd_client *c, uint64_t call_id);

/* @return the number of calls in flight. */
size_t inferd_client_in_flight(const struct inferd_client *c);

/* For event loops: the receive fds (readable when a frame may be waiting) and how long the
 * loop may sleep before inferd_client_poll(c, 0) must run for timers (-1 = no timer).
 * @return the number of fds written (at most max). */
size_t inferd_client_fds(const struct inferd_client *c, int *fds, size_t max);
int inferd_client_next_timeout_ms(const struct inferd_client *c);

/* ---- blocking use ------------------------------------------------------------------------ */

/* Runs one call to its end, delivering frames to fn (may be NULL). Frames of other calls in
 * flight are delivered meanwhile. @return the final status (>= 0) with its message copied into
 * msg (may be NULL), or a negative errno when the call could not be started. */
int inferd_client_call(struct inferd_client *c, int method, const void *payload, size_t len,
                       const struct inferd_call_options *opts, inferd_reply_fn fn, void *arg,
                       char *msg, size_t msglen);

/* Runs a unary call with protobuf-c messages. On STATUS_OK, *reply (free with
 * protobuf_c_message_free_unpacked(*reply, NULL)) holds the decoded reply; a reply that does
 * not decode gives STATUS_INTERNAL. @return as inferd_client_call(). */
int inferd_client_unary(struct inferd_client *c, int method, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
                        const struct inferd_call_options *opts, char *msg, size_t msglen);

/* @return a static name such as "DEADLINE_EXCEEDED". */
const char *inferd_client_status_name(int status);

#ifdef __cplusplus
}
#endif

#endif
