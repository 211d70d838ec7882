/* Private structures shared by the daemon's pieces (server, listener, calls, methods).
 * Everything here runs on the event-loop thread. */
#ifndef INFERD_SERVER_INTERNAL_H
#define INFERD_SERVER_INTERNAL_H

#include <event2/event.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "config.h"
#include "frame.h"
#include "images.h"
#include "models.h"
#include "server.h"

#define STATS_METHOD_SLOTS 13   /* Method values 0..11, then one slot for unknown values */
#define STATS_STATUS_SLOTS 17

struct server_stats {
	uint64_t calls_total;
	uint64_t calls[STATS_METHOD_SLOTS][STATS_STATUS_SLOTS]; /* finished, by method, status */
	uint64_t bytes_in, bytes_out;
	uint64_t frames_in, frames_out;
	uint64_t frames_rejected;  /* refused before reaching a method (bad frame, auth, ...) */
	uint64_t frames_dropped;   /* replies nanomsg would not take */
	uint64_t calls_abandoned;  /* ended because the client broke its keepalive promise */
};

enum server_state {
	SERVER_STATE_SERVING,
	SERVER_STATE_DRAINING,   /* SIGTERM: finishing calls in flight */
	SERVER_STATE_LINGERING,  /* all replies sent; letting nanomsg flush before closing */
};

struct listener {
	struct inferd_server *srv;
	char *url;
	int sock;                /* nanomsg AF_SP_RAW NN_REP socket */
	struct event *rx_ev;
	uint64_t broken_seen;    /* nanomsg's NN_STAT_BROKEN_CONNECTIONS at the last check */
};

struct call;

/* A client connection that promised keepalives (peers.c). */
struct peer {
	struct listener *lis;
	uint8_t key[INFERD_SP_HEADER_MAX];    /* SP backtrace without the request id */
	size_t key_len;
	double last_heard;                    /* monotonic seconds of its last frame */
	unsigned refs;                        /* running calls with a keepalive */
	size_t bucket;
	struct peer *next;
};

#define PEER_BUCKETS 64

struct peer_table {
	struct peer *buckets[PEER_BUCKETS];
	size_t count;
};

/* A method's hooks on a call it keeps running after its handler returned. */
struct call_ops {
	/* Frees the method's state; called exactly once when the call ends, however it ends. */
	void (*release)(struct call *c);
};

enum call_state {
	CALL_STATE_RUNNING,
	CALL_STATE_DONE,
};

struct call {
	struct inferd_server *srv;
	struct listener *lis;
	uint8_t header[INFERD_SP_HEADER_MAX]; /* nanomsg backtrace: peer pipe id + request id */
	size_t header_len;
	uint64_t call_id;
	int method;
	uint32_t seq;                         /* next reply frame's seq */
	enum call_state state;
	double started;                       /* monotonic seconds */
	struct event *deadline_ev;
	uint32_t keepalive_ms;                /* the client's promise (Frame.keepalive_ms), 0 none */
	struct peer *peer;                    /* its connection's liveness, when keepalive_ms */
	const struct call_ops *ops;
	void *method_state;
	struct call *hash_next;
};

struct call_table {
	struct call **buckets;
	size_t n_buckets;         /* a power of two */
	size_t count;
};

/* The settings SIGHUP can change while the daemon runs (the rest needs a restart). */
struct server_limits {
	size_t max_frame_bytes;
	unsigned max_calls;
	uint64_t default_deadline_ms;
	double drain_timeout_s;
};

struct inferd_server {
	struct event_base *base;
	const struct inferd_config *cfg;
	struct server_limits limits;      /* from cfg at start, from the file on SIGHUP */
	struct auth *auth;
	struct listener *listeners;
	size_t n_listeners;
	struct call_table calls;
	struct peer_table peers;
	struct server_stats stats;
	enum server_state state;
	double started;                       /* monotonic seconds */
	struct event *sig_term, *sig_int, *sig_hup;
	struct event *drain_ev, *linger_ev, *watchdog_ev, *broken_ev;
	char allocator[128];
	struct served_model *models;
	size_t n_models;
	struct served_image *images;          /* diffusion models (images.h) */
	size_t n_images;
	struct http_server *http;             /* NULL when [http] enabled = false */
	struct metrics *metrics;
};

double server_now(void);

/* ---- calls (call.c) ---------------------------------------------------------------------- */

int call_table_init(struct call_table *t);
void call_table_fini(struct call_table *t);
/* Finds a running call of the same peer (all of the header but the request id) and id. */
struct call *call_table_find(struct call_table *t, const struct listener *lis,
                             const uint8_t *header, size_t header_len, uint64_t call_id);

/* Creates a running call and adds it to the server's table; arms the deadline when
 * deadline_ms > 0. @return the call (owned by the table until it ends) or NULL (no memory). */
struct call *call_new(struct inferd_server *srv, struct listener *lis, const uint8_t *header,
                      size_t header_len, uint64_t call_id, int method, uint64_t deadline_ms);

/* Records the client's keepalive promise for c (peers.c ends c when it is broken).
 * @return 0 or -ENOMEM. */
int call_set_keepalive(struct call *c, uint32_t keepalive_ms);

/* ---- client liveness (peers.c) ----------------------------------------------------------- */

/* A frame came from this peer: refreshes its last_heard when calls hold it. */
void peer_heard(struct peer_table *t, const struct listener *lis, const uint8_t *header,
                size_t header_len, double now);
struct peer *peer_ref(struct peer_table *t, struct listener *lis, const uint8_t *header,
                      size_t header_len, double now);
void peer_unref(struct peer_table *t, struct peer *p); /* accepts NULL */
/* Ends (CANCELLED) the calls whose client has been silent past its promise. */
void peers_check(struct inferd_server *srv);

/* Sends a data frame (not the last) carrying msg. */
void call_reply(struct call *c, const ProtobufCMessage *msg);

/* Sends the last frame (msg may be NULL), counts the call and frees it: c is gone after. */
void call_finish(struct call *c, int status, const ProtobufCMessage *msg, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Visits every running call; the visitor may finish the call it is given. */
void call_table_foreach(struct call_table *t, void (*fn)(struct call *c, void *arg), void *arg);

/* ---- sending (listener.c) ---------------------------------------------------------------- */

/* Encodes and sends one reply frame to the peer named by header. */
void listener_send(struct listener *lis, const uint8_t *header, size_t header_len,
                   const inferd_frame *frame);

/* Sends a final status frame for a call that never started (rejected). */
void listener_reject(struct listener *lis, const uint8_t *header, size_t header_len,
                     uint64_t call_id, int method, int status, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

int listener_open(struct listener *lis, struct inferd_server *srv, const char *url,
                  char *err, size_t errlen);
void listener_close(struct listener *lis);
void listener_set_max_frame(struct listener *lis, size_t max_frame_bytes);
/* Logs the connections nanomsg broke since the last check (a peer that sent a frame over
 * NN_RCVMAXSIZE, or a network error): nanomsg drops them without telling the socket's user,
 * so the daemon polls its statistics (server.c: once a second). */
void listener_check_broken(struct listener *lis);

/* ---- dispatch (dispatch.c) and methods (methods.c) --------------------------------------- */

/* Handles one received message: decode, checks, method dispatch. Takes nothing over. */
void server_dispatch(struct inferd_server *srv, struct listener *lis,
                     const struct inferd_wire_msg *msg);

typedef void (*method_handler)(struct call *c, const uint8_t *payload, size_t len);

struct method_entry {
	int method;
	method_handler handler;
	bool while_draining;   /* cheap calls still served during a drain */
};

/* @return the entry of a served method, or NULL. */
const struct method_entry *method_lookup(int method);

/* Server state hooks used by methods. */
void server_call_ended(struct inferd_server *srv);
void server_stats_count(struct inferd_server *srv, int method, int status);

#endif
