/* Calls in flight: the table keyed by (listener, peer, call id), deadlines, reply frames. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server-internal.h"

/* The peer is the backtrace without its last 4 bytes (the request id of this message). */
static size_t peer_len(size_t header_len)
{
	return header_len >= 4 ? header_len - 4 : 0;
}

static uint64_t call_hash(const struct listener *lis, const uint8_t *header, size_t header_len,
                          uint64_t call_id)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	uintptr_t l = (uintptr_t)lis;
	for (size_t i = 0; i < sizeof(l); i++)
		h = (h ^ ((l >> (8 * i)) & 0xff)) * 1099511628211ull;
	for (size_t i = 0; i < peer_len(header_len); i++)
		h = (h ^ header[i]) * 1099511628211ull;
	for (size_t i = 0; i < 8; i++)
		h = (h ^ ((call_id >> (8 * i)) & 0xff)) * 1099511628211ull;
	return h;
}

static int same_call(const struct call *c, const struct listener *lis, const uint8_t *header,
                     size_t header_len, uint64_t call_id)
{
	size_t pl = peer_len(header_len);
	return c->call_id == call_id && c->lis == lis && peer_len(c->header_len) == pl &&
	       memcmp(c->header, header, pl) == 0;
}

int call_table_init(struct call_table *t)
{
	t->n_buckets = 1024;
	t->count = 0;
	t->buckets = calloc(t->n_buckets, sizeof(*t->buckets));
	return t->buckets ? 0 : -ENOMEM;
}

void call_table_fini(struct call_table *t)
{
	free(t->buckets);
	t->buckets = NULL;
	t->n_buckets = t->count = 0;
}

static void table_grow(struct call_table *t)
{
	size_t n = t->n_buckets * 2;
	struct call **b = calloc(n, sizeof(*b));

	if (!b)
		return; /* keep the longer chains; lookups stay correct */
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct call *c = t->buckets[i];
		while (c) {
			struct call *next = c->hash_next;
			size_t k = call_hash(c->lis, c->header, c->header_len, c->call_id) & (n - 1);
			c->hash_next = b[k];
			b[k] = c;
			c = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->n_buckets = n;
}

struct call *call_table_find(struct call_table *t, const struct listener *lis,
                             const uint8_t *header, size_t header_len, uint64_t call_id)
{
	size_t k = call_hash(lis, header, header_len, call_id) & (t->n_buckets - 1);
	for (struct call *c = t->buckets[k]; c; c = c->hash_next)
		if (same_call(c, lis, header, header_len, call_id))
			return c;
	return NULL;
}

static void table_remove(struct call_table *t, struct call *c)
{
	size_t k = call_hash(c->lis, c->header, c->header_len, c->call_id) & (t->n_buckets - 1);
	for (struct call **pp = &t->buckets[k]; *pp; pp = &(*pp)->hash_next) {
		if (*pp == c) {
			*pp = c->hash_next;
			t->count--;
			return;
		}
	}
}

void call_table_foreach(struct call_table *t, void (*fn)(struct call *c, void *arg), void *arg)
{
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct call *c = t->buckets[i];
		while (c) {
			struct call *next = c->hash_next; /* fn may finish c */
			fn(c, arg);
			c = next;
		}
	}
}

/* ---- lifecycle --------------------------------------------------------------------------- */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct call *c = arg;
	(void)fd;
	(void)what;
	log_debug("call %llu (%s): deadline exceeded", (unsigned long long)c->call_id,
	          inferd_method_name(c->method));
	call_finish(c, INFERD__V1__STATUS_CODE__STATUS_DEADLINE_EXCEEDED, NULL,
	            "deadline exceeded after %.3f s", server_now() - c->started);
}

struct call *call_new(struct inferd_server *srv, struct listener *lis, const uint8_t *header,
                      size_t header_len, uint64_t call_id, int method, uint64_t deadline_ms)
{
	struct call *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->srv = srv;
	c->lis = lis;
	memcpy(c->header, header, header_len);
	c->header_len = header_len;
	c->call_id = call_id;
	c->method = method;
	c->state = CALL_STATE_RUNNING;
	c->started = server_now();
	if (deadline_ms) {
		struct timeval tv = {
			.tv_sec = (time_t)(deadline_ms / 1000),
			.tv_usec = (suseconds_t)(deadline_ms % 1000) * 1000,
		};
		c->deadline_ev = evtimer_new(srv->base, on_deadline, c);
		if (!c->deadline_ev || evtimer_add(c->deadline_ev, &tv) < 0) {
			if (c->deadline_ev)
				event_free(c->deadline_ev);
			free(c);
			return NULL;
		}
	}
	struct call_table *t = &srv->calls;
	if (t->count >= t->n_buckets)
		table_grow(t);
	size_t k = call_hash(lis, header, header_len, call_id) & (t->n_buckets - 1);
	c->hash_next = t->buckets[k];
	t->buckets[k] = c;
	t->count++;
	return c;
}

int call_set_keepalive(struct call *c, uint32_t keepalive_ms)
{
	if (!keepalive_ms)
		return 0;
	c->peer = peer_ref(&c->srv->peers, c->lis, c->header, c->header_len, server_now());
	if (!c->peer)
		return -ENOMEM;
	c->keepalive_ms = keepalive_ms;
	return 0;
}

static void send_frame(struct call *c, const ProtobufCMessage *msg, bool last, int status,
                       const char *message)
{
	inferd_frame f = INFERD_FRAME_INIT;
	uint8_t *payload = NULL;

	f.call_id = c->call_id;
	f.method = (Inferd__V1__Method)c->method;
	if (msg) {
		size_t n = protobuf_c_message_get_packed_size(msg);
		payload = malloc(n ? n : 1);
		if (!payload) {
			/* Out of memory: still end the call, without its payload. */
			if (!last)
				return;
			status = INFERD__V1__STATUS_CODE__STATUS_INTERNAL;
			message = "out of memory encoding the reply";
		} else {
			f.payload.len = protobuf_c_message_pack(msg, payload);
			f.payload.data = payload;
		}
	}
	f.seq = c->seq++;
	f.end_of_stream = last;
	f.status = (Inferd__V1__StatusCode)status;
	f.status_message = (char *)(message ? message : "");
	listener_send(c->lis, c->header, c->header_len, &f);
	free(payload);
}

void call_reply(struct call *c, const ProtobufCMessage *msg)
{
	if (c->state != CALL_STATE_RUNNING)
		return;
	send_frame(c, msg, false, INFERD__V1__STATUS_CODE__STATUS_OK, NULL);
}

void call_finish(struct call *c, int status, const ProtobufCMessage *msg, const char *fmt, ...)
{
	char message[512] = "";
	struct inferd_server *srv = c->srv;

	if (c->state != CALL_STATE_RUNNING)
		return;
	c->state = CALL_STATE_DONE;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(message, sizeof(message), fmt, ap);
		va_end(ap);
	}
	send_frame(c, msg, true, status, message);
	if (status != INFERD__V1__STATUS_CODE__STATUS_OK)
		log_debug("call %llu (%s) ended %s: %s", (unsigned long long)c->call_id,
		          inferd_method_name(c->method), inferd_status_name(status), message);
	server_stats_count(srv, c->method, status);
	table_remove(&srv->calls, c);
	peer_unref(&srv->peers, c->peer);
	if (c->ops && c->ops->release)
		c->ops->release(c);
	if (c->deadline_ev)
		event_free(c->deadline_ev);
	free(c);
	server_call_ended(srv);
}
