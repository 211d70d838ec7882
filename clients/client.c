/* libinferd-client: calls over nanomsg raw REQ sockets. */
#include "inferd-client.h"

#include <errno.h>
#include <stdarg.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <nanomsg/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frame.h"

#define RETRY_MS 10            /* unsent calls are retried this often */
#define DEADLINE_GRACE_S 0.5   /* after the deadline, wait this long for the daemon's answer */
#define RX_BATCH 512
#define ENDPOINT_REST_S 1.0    /* an endpoint that refused a call is skipped this long */
#define KEEPALIVE_DEFAULT_MS 10000

typedef Inferd__V1__StatusCode status_code;

struct pcall {
	uint64_t id;
	int method;
	int endpoint;                /* -1 until sent; the requested one, or -1 for any */
	bool any_endpoint;
	bool sent;
	bool cancel_requested;
	inferd_reply_fn fn;
	void *arg;
	double deadline;             /* monotonic seconds, 0 = none */
	double send_by;              /* give up sending at this time */
	uint32_t next_seq;
	uint8_t retries;             /* times sent again after an endpoint refused it */
	uint8_t *wire;               /* the packed request frame, kept until sent; with several
	                              * endpoints, until its first reply frame (for a retry) */
	size_t wire_len;
	struct pcall *hash_next;
	struct pcall *unsent_next;   /* FIFO of calls waiting for a connection */
};

struct endpoint {
	char *url;
	int sock;
	int rcvfd;
	double last_sent;            /* monotonic seconds of the last frame sent */
	bool busy;                   /* has sent calls in flight (run_timers) */
	double down_until;           /* refused a call with UNAVAILABLE: skipped until then */
};

struct inferd_client {
	struct endpoint *eps;
	size_t n_eps;
	size_t rr;                   /* round-robin cursor */
	char *api_key, *client_name;
	uint64_t default_deadline_ms;
	int connect_timeout_ms;
	uint32_t keepalive_ms;       /* 0: no promise */
	uint8_t *keepalive_wire;     /* the packed KeepAlive frame */
	size_t keepalive_len;
	uint64_t next_id;
	struct pcall **buckets;
	size_t n_buckets, count;
	size_t n_unsent;
	struct pcall *unsent_head, *unsent_tail;  /* sent in the order they were started */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *inferd_client_status_name(int status)
{
	return inferd_status_name(status);
}

/* ---- the table of calls ------------------------------------------------------------------ */

static size_t bucket_of(const struct inferd_client *c, uint64_t id)
{
	return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 20) & (c->n_buckets - 1);
}

static struct pcall *find_call(const struct inferd_client *c, uint64_t id)
{
	for (struct pcall *p = c->buckets[bucket_of(c, id)]; p; p = p->hash_next)
		if (p->id == id)
			return p;
	return NULL;
}

static void grow(struct inferd_client *c)
{
	size_t old_n = c->n_buckets;
	struct pcall **old = c->buckets;
	struct pcall **b = calloc(old_n * 2, sizeof(*b));

	if (!b)
		return;
	c->buckets = b;
	c->n_buckets = old_n * 2;
	for (size_t i = 0; i < old_n; i++) {
		for (struct pcall *p = old[i], *next; p; p = next) {
			next = p->hash_next;
			size_t k = bucket_of(c, p->id);
			p->hash_next = b[k];
			b[k] = p;
		}
	}
	free(old);
}

static void add_call(struct inferd_client *c, struct pcall *p)
{
	if (c->count >= c->n_buckets)
		grow(c);
	size_t k = bucket_of(c, p->id);
	p->hash_next = c->buckets[k];
	c->buckets[k] = p;
	c->count++;
}

static void unsent_unlink(struct inferd_client *c, struct pcall *p)
{
	struct pcall *prev = NULL;
	for (struct pcall *q = c->unsent_head; q; prev = q, q = q->unsent_next) {
		if (q != p)
			continue;
		if (prev)
			prev->unsent_next = q->unsent_next;
		else
			c->unsent_head = q->unsent_next;
		if (c->unsent_tail == q)
			c->unsent_tail = prev;
		c->n_unsent--;
		return;
	}
}

static void remove_call(struct inferd_client *c, struct pcall *p)
{
	for (struct pcall **pp = &c->buckets[bucket_of(c, p->id)]; *pp; pp = &(*pp)->hash_next) {
		if (*pp == p) {
			*pp = p->hash_next;
			c->count--;
			break;
		}
	}
	if (!p->sent)
		unsent_unlink(c, p);
	free(p->wire);
	free(p);
}

/* ---- construction ------------------------------------------------------------------------ */

int inferd_client_new(const char *const *urls, size_t n_urls,
                      const struct inferd_client_options *opts, struct inferd_client **out,
                      char *err, size_t errlen)
{
	struct inferd_client *c;
	int rc = -ENOMEM;

	*out = NULL;
	if (n_urls == 0) {
		snprintf(err, errlen, "no endpoint given");
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		goto oom;
	c->next_id = 1;
	c->n_buckets = 256;
	c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
	c->eps = calloc(n_urls, sizeof(*c->eps));
	if (!c->buckets || !c->eps)
		goto oom;
	if (opts) {
		c->default_deadline_ms = opts->default_deadline_ms;
		c->connect_timeout_ms = opts->connect_timeout_ms;
		if ((opts->api_key && !(c->api_key = strdup(opts->api_key))) ||
		    (opts->client_name && !(c->client_name = strdup(opts->client_name))))
			goto oom;
	}
	if (c->connect_timeout_ms <= 0)
		c->connect_timeout_ms = 5000;
	int ka = opts ? opts->keepalive_ms : 0;
	c->keepalive_ms = ka < 0 ? 0 : ka == 0 ? KEEPALIVE_DEFAULT_MS : (uint32_t)ka;
	if (c->keepalive_ms) {
		inferd_frame kf = INFERD_FRAME_INIT;
		kf.method = INFERD__V1__METHOD__METHOD_KEEPALIVE;
		if (inferd_frame_pack(&kf, &c->keepalive_wire, &c->keepalive_len) < 0)
			goto oom;
	}
	for (size_t i = 0; i < n_urls; i++) {
		struct endpoint *ep = &c->eps[i];
		int bufsize = 4 << 20, maxsize = -1, nodelay = 1;
		size_t sz = sizeof(ep->rcvfd);

		ep->sock = nn_socket(AF_SP_RAW, NN_REQ);
		c->n_eps++;
		if (!(ep->url = strdup(urls[i])))
			goto oom;
		if (ep->sock < 0 ||
		    nn_setsockopt(ep->sock, NN_SOL_SOCKET, NN_RCVBUF, &bufsize, sizeof(bufsize)) < 0 ||
		    nn_setsockopt(ep->sock, NN_SOL_SOCKET, NN_SNDBUF, &bufsize, sizeof(bufsize)) < 0 ||
		    nn_setsockopt(ep->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsize, sizeof(maxsize)) < 0 ||
		    nn_setsockopt(ep->sock, NN_TCP, NN_TCP_NODELAY, &nodelay, sizeof(nodelay)) < 0 ||
		    nn_connect(ep->sock, urls[i]) < 0 ||
		    nn_getsockopt(ep->sock, NN_SOL_SOCKET, NN_RCVFD, &ep->rcvfd, &sz) < 0) {
			rc = -nn_errno();
			snprintf(err, errlen, "%s: %s", urls[i], nn_strerror(-rc));
			goto fail;
		}
	}
	*out = c;
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
fail:
	inferd_client_free(c);
	return rc;
}

void inferd_client_free(struct inferd_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; c->buckets && i < c->n_buckets; i++) {
		for (struct pcall *p = c->buckets[i], *next; p; p = next) {
			next = p->hash_next;
			free(p->wire);
			free(p);
		}
	}
	for (size_t i = 0; i < c->n_eps; i++) {
		if (c->eps[i].sock >= 0)
			nn_close(c->eps[i].sock);
		free(c->eps[i].url);
	}
	free(c->eps);
	free(c->buckets);
	free(c->api_key);
	free(c->client_name);
	free(c->keepalive_wire);
	free(c);
}

/* ---- delivering -------------------------------------------------------------------------- */

/* Delivers a final frame the library made itself, and forgets the call. */
static void end_locally(struct inferd_client *c, struct pcall *p, int status, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

static void end_locally(struct inferd_client *c, struct pcall *p, int status, const char *fmt,
                        ...)
{
	char message[512];
	va_list ap;
	struct inferd_reply r = {
		.call_id = p->id, .method = p->method, .seq = p->next_seq, .end_of_stream = true,
		.status = status, .status_message = message, .local = true,
	};

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	inferd_reply_fn fn = p->fn;
	void *arg = p->arg;
	remove_call(c, p);
	if (fn)
		fn(&r, arg);
}

static int send_cancel(struct inferd_client *c, struct pcall *p);
static bool retry_elsewhere(struct inferd_client *c, struct pcall *p, const inferd_frame *f);

static void deliver(struct inferd_client *c, const struct inferd_wire_msg *msg)
{
	inferd_frame *f = NULL;
	uint64_t id = 0;
	char err[128];

	if (inferd_frame_unpack(msg->body, msg->body_len, 0, &f, err, sizeof(err)) < 0)
		return; /* not ours to understand; the call will time out or get a later frame */
	id = f->call_id;
	if (id == 0 && msg->header_len >= 4) {
		/* Refused before its frame could be read: the request id names the call. */
		const uint8_t *h = msg->header + msg->header_len - 4;
		id = ((uint64_t)(h[0] & 0x7f) << 24) | ((uint64_t)h[1] << 16) |
		     ((uint64_t)h[2] << 8) | h[3];
	}
	struct pcall *p = find_call(c, id);
	if (!p)
		goto out; /* a late frame of a call already ended */
	if (f->seq != p->next_seq) {
		uint32_t want = p->next_seq;
		if (!f->end_of_stream)
			send_cancel(c, p);
		end_locally(c, p, INFERD__V1__STATUS_CODE__STATUS_DATA_LOSS,
		            "reply frame %u of call %llu was lost (got frame %u)", want,
		            (unsigned long long)id, f->seq);
		goto out;
	}
	if (retry_elsewhere(c, p, f))
		goto out;
	p->next_seq++;
	free(p->wire); /* a frame came: the call is not sent again */
	p->wire = NULL;
	struct inferd_reply r = {
		.call_id = id,
		.method = (int)f->method,
		.payload = f->payload.data,
		.payload_len = f->payload.len,
		.seq = f->seq,
		.end_of_stream = f->end_of_stream,
		.status = (int)f->status,
		.status_message = f->status_message ? f->status_message : "",
	};
	inferd_reply_fn fn = p->fn;
	void *arg = p->arg;
	if (f->end_of_stream) {
		remove_call(c, p);
		if (fn)
			fn(&r, arg);
	} else if (fn && fn(&r, arg) != 0 && !p->cancel_requested) {
		send_cancel(c, p);
	}
out:
	inferd_frame_free(f);
}

/* ---- sending ----------------------------------------------------------------------------- */

static int pack_request(struct inferd_client *c, struct pcall *p, const void *payload,
                        size_t len, uint64_t deadline_ms)
{
	inferd_frame f = INFERD_FRAME_INIT;
	Inferd__V1__Frame__MetadataEntry meta[2], *metap[2];
	size_t n_meta = 0;

	if (c->api_key) {
		inferd__v1__frame__metadata_entry__init(&meta[n_meta]);
		meta[n_meta].key = (char *)"api-key";
		meta[n_meta].value = c->api_key;
		metap[n_meta] = &meta[n_meta];
		n_meta++;
	}
	if (c->client_name) {
		inferd__v1__frame__metadata_entry__init(&meta[n_meta]);
		meta[n_meta].key = (char *)"client";
		meta[n_meta].value = c->client_name;
		metap[n_meta] = &meta[n_meta];
		n_meta++;
	}
	f.call_id = p->id;
	f.method = (Inferd__V1__Method)p->method;
	f.deadline_ms = deadline_ms;
	if (p->method != INFERD__V1__METHOD__METHOD_CANCEL)
		f.keepalive_ms = c->keepalive_ms;
	f.n_metadata = n_meta;
	f.metadata = metap;
	f.payload.data = (uint8_t *)payload;
	f.payload.len = payload ? len : 0;
	return inferd_frame_pack(&f, &p->wire, &p->wire_len);
}

/* @return whether a round-robin call may go to endpoint e now: not while it rests after
 * refusing a call, unless every endpoint rests. */
static bool endpoint_usable(const struct inferd_client *c, size_t e, double now)
{
	if (c->eps[e].down_until <= now)
		return true;
	for (size_t i = 0; i < c->n_eps; i++)
		if (c->eps[i].down_until <= now)
			return false;
	return true;
}

/* Tries to hand the call to an endpoint. @return 0 when sent, -EAGAIN to retry later. */
static int try_send(struct inferd_client *c, struct pcall *p)
{
	uint8_t hdr[4];
	double now = now_s();

	inferd_wire_request_id((uint32_t)(p->id & 0x7fffffff), hdr);
	for (size_t tries = 0; tries < c->n_eps; tries++) {
		size_t e = p->any_endpoint ? (c->rr++ % c->n_eps) : (size_t)p->endpoint;
		if (p->any_endpoint && !endpoint_usable(c, e, now))
			continue;
		int rc = inferd_wire_send(c->eps[e].sock, hdr, sizeof(hdr), p->wire, p->wire_len,
		                          NN_DONTWAIT);
		if (rc == 0) {
			c->eps[e].last_sent = now;
			p->endpoint = (int)e;
			unsent_unlink(c, p);
			p->sent = true;
			if (!p->any_endpoint || c->n_eps == 1) {
				free(p->wire);
				p->wire = NULL;
			}
			return 0;
		}
		if (!p->any_endpoint)
			break;
	}
	return -EAGAIN;
}

/* A daemon refused a round-robin call with UNAVAILABLE as its only frame (it drains, or
 * cannot take work): nothing ran, so the call goes to the next endpoint, and the refusing
 * one rests for ENDPOINT_REST_S. @return whether the call was queued again. */
static bool retry_elsewhere(struct inferd_client *c, struct pcall *p, const inferd_frame *f)
{
	if (!p->any_endpoint || !p->wire || !f->end_of_stream || f->seq != 0 ||
	    f->status != INFERD__V1__STATUS_CODE__STATUS_UNAVAILABLE ||
	    p->retries + 1u >= c->n_eps || p->cancel_requested)
		return false;
	c->eps[p->endpoint].down_until = now_s() + ENDPOINT_REST_S;
	p->retries++;
	p->sent = false;
	p->endpoint = -1;
	p->unsent_next = NULL;
	if (c->unsent_tail)
		c->unsent_tail->unsent_next = p;
	else
		c->unsent_head = p;
	c->unsent_tail = p;
	c->n_unsent++;
	if (c->unsent_head == p)
		try_send(c, p);
	return true;
}

static int start_call(struct inferd_client *c, int method, const void *payload, size_t len,
                      const struct inferd_call_options *opts, inferd_reply_fn fn, void *arg,
                      uint64_t *call_id)
{
	struct inferd_call_options dflt = INFERD_CALL_OPTIONS_INIT;
	struct pcall *p;
	double now = now_s();

	if (!opts)
		opts = &dflt;
	if (opts->endpoint >= (int)c->n_eps || method <= 0)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->id = c->next_id++;
	if (c->next_id > 0x7fffffff) /* keep ids equal to their 31-bit request id */
		c->next_id = 1;
	p->method = method;
	p->fn = fn;
	p->arg = arg;
	p->any_endpoint = opts->endpoint < 0;
	p->endpoint = opts->endpoint;
	uint64_t deadline_ms = opts->deadline_ms ? opts->deadline_ms : c->default_deadline_ms;
	if (deadline_ms)
		p->deadline = now + (double)deadline_ms / 1000.0;
	p->send_by = now + c->connect_timeout_ms / 1000.0;
	if (pack_request(c, p, payload, len, deadline_ms) < 0) {
		free(p);
		return -ENOMEM;
	}
	add_call(c, p);
	if (c->unsent_tail)
		c->unsent_tail->unsent_next = p;
	else
		c->unsent_head = p;
	c->unsent_tail = p;
	c->n_unsent++;
	if (call_id)
		*call_id = p->id;
	/* Calls leave in the order they were started: only the oldest unsent one goes now. */
	if (c->unsent_head == p)
		try_send(c, p);
	return 0;
}

int inferd_client_start(struct inferd_client *c, int method, const void *payload, size_t len,
                        const struct inferd_call_options *opts, inferd_reply_fn fn, void *arg,
                        uint64_t *call_id)
{
	return start_call(c, method, payload, len, opts, fn, arg, call_id);
}

int inferd_client_start_msg(struct inferd_client *c, int method, const ProtobufCMessage *req,
                            const struct inferd_call_options *opts, inferd_reply_fn fn,
                            void *arg, uint64_t *call_id)
{
	size_t n = req ? protobuf_c_message_get_packed_size(req) : 0;
	uint8_t *buf = malloc(n ? n : 1);
	int rc;

	if (!buf)
		return -ENOMEM;
	if (req)
		n = protobuf_c_message_pack(req, buf);
	rc = start_call(c, method, buf, n, opts, fn, arg, call_id);
	free(buf);
	return rc;
}

static int send_cancel(struct inferd_client *c, struct pcall *p)
{
	Inferd__V1__CancelRequest req = INFERD__V1__CANCEL_REQUEST__INIT;
	struct inferd_call_options o = INFERD_CALL_OPTIONS_INIT;

	p->cancel_requested = true;
	req.call_id = p->id;
	o.endpoint = p->endpoint;
	o.deadline_ms = (uint64_t)c->connect_timeout_ms;
	return inferd_client_start_msg(c, INFERD__V1__METHOD__METHOD_CANCEL, &req.base, &o, NULL,
	                               NULL, NULL);
}

int inferd_client_cancel(struct inferd_client *c, uint64_t call_id)
{
	struct pcall *p = find_call(c, call_id);

	if (!p)
		return -ENOENT;
	if (!p->sent) {
		end_locally(c, p, INFERD__V1__STATUS_CODE__STATUS_CANCELLED,
		            "cancelled before it was sent");
		return 0;
	}
	if (p->cancel_requested)
		return 0;
	return send_cancel(c, p);
}

size_t inferd_client_in_flight(const struct inferd_client *c)
{
	return c->count;
}

/* ---- polling ----------------------------------------------------------------------------- */

/* Sends a KeepAlive frame on every endpoint with calls in flight that has sent nothing for a
 * third of the promise. @return seconds until the next one is due, or -1 (none). */
static double keepalive_timers(struct inferd_client *c, double now)
{
	double next = -1, every = c->keepalive_ms / 3000.0;
	uint8_t hdr[4];

	if (!c->keepalive_ms)
		return -1;
	for (size_t e = 0; e < c->n_eps; e++)
		c->eps[e].busy = false;
	for (size_t i = 0; i < c->n_buckets; i++)
		for (struct pcall *p = c->buckets[i]; p; p = p->hash_next)
			if (p->sent && p->endpoint >= 0)
				c->eps[p->endpoint].busy = true;
	inferd_wire_request_id(0, hdr);
	for (size_t e = 0; e < c->n_eps; e++) {
		struct endpoint *ep = &c->eps[e];
		if (!ep->busy)
			continue;
		if (now - ep->last_sent >= every &&
		    inferd_wire_send(ep->sock, hdr, sizeof(hdr), c->keepalive_wire, c->keepalive_len,
		                     NN_DONTWAIT) == 0)
			ep->last_sent = now;
		double due = ep->last_sent + every - now;
		if (due < 0)
			due = RETRY_MS / 1000.0; /* the send did not go: retry soon */
		next = next < 0 || due < next ? due : next;
	}
	return next;
}

/* Retries unsent calls (oldest first) and ends overdue ones.
 * @return seconds until the next timer, or -1. */
static double run_timers(struct inferd_client *c, int *delivered)
{
	double now = now_s(), next = -1;
	bool blocked = false;

	for (struct pcall *p = c->unsent_head, *nx; p; p = nx) {
		nx = p->unsent_next;
		if (!blocked && try_send(c, p) == 0)
			continue;
		blocked = true; /* keep the order: nothing younger goes before it */
		if (now >= p->send_by || (p->deadline && now >= p->deadline)) {
			const char *url = p->any_endpoint ? c->eps[0].url : c->eps[p->endpoint].url;
			end_locally(c, p, INFERD__V1__STATUS_CODE__STATUS_UNAVAILABLE,
			            "cannot reach %s%s within %d ms", url,
			            c->n_eps > 1 && p->any_endpoint ? " (or any other endpoint)" : "",
			            c->connect_timeout_ms);
			(*delivered)++;
		}
	}
	if (c->n_unsent)
		next = RETRY_MS / 1000.0;
	for (size_t i = 0; i < c->n_buckets; i++) {
		for (struct pcall *p = c->buckets[i], *nx; p; p = nx) {
			nx = p->hash_next;
			if (!p->sent || !p->deadline)
				continue;
			double due = p->deadline + DEADLINE_GRACE_S;
			if (now >= due) {
				if (!p->cancel_requested)
					send_cancel(c, p);
				end_locally(c, p, INFERD__V1__STATUS_CODE__STATUS_DEADLINE_EXCEEDED,
				            "no answer within the deadline");
				(*delivered)++;
				continue;
			}
			next = next < 0 || due - now < next ? due - now : next;
		}
	}
	double ka = keepalive_timers(c, now);
	if (ka >= 0)
		next = next < 0 || ka < next ? ka : next;
	return next;
}

int inferd_client_next_timeout_ms(const struct inferd_client *c)
{
	double now = now_s(), next = -1;

	if (c->n_unsent)
		return RETRY_MS;
	for (size_t i = 0; i < c->n_buckets; i++)
		for (struct pcall *p = c->buckets[i]; p; p = p->hash_next) {
			if (p->deadline) {
				double t = p->deadline + DEADLINE_GRACE_S - now;
				next = next < 0 || t < next ? t : next;
			}
			if (c->keepalive_ms && p->sent && p->endpoint >= 0) {
				double t = c->eps[p->endpoint].last_sent + c->keepalive_ms / 3000.0 - now;
				next = next < 0 || t < next ? t : next;
			}
		}
	if (next < 0)
		return -1;
	return next <= 0 ? 0 : (int)(next * 1000.0) + 1;
}

size_t inferd_client_fds(const struct inferd_client *c, int *fds, size_t max)
{
	size_t n = 0;
	for (size_t i = 0; i < c->n_eps && n < max; i++)
		fds[n++] = c->eps[i].rcvfd;
	return n;
}

static int drain_sockets(struct inferd_client *c)
{
	int delivered = 0;

	for (size_t i = 0; i < c->n_eps; i++) {
		for (int k = 0; k < RX_BATCH; k++) {
			struct inferd_wire_msg msg;
			int rc = inferd_wire_recv(c->eps[i].sock, &msg, NN_DONTWAIT);
			if (rc == -EAGAIN || rc == -EINTR)
				break;
			if (rc == -EPROTO)
				continue;
			if (rc < 0)
				return rc;
			deliver(c, &msg);
			inferd_wire_msg_fini(&msg);
			delivered++;
		}
	}
	return delivered;
}

int inferd_client_poll(struct inferd_client *c, int timeout_ms)
{
	struct nn_pollfd pfd[16];
	size_t n = c->n_eps < 16 ? c->n_eps : 16;
	int delivered = 0;
	double next = run_timers(c, &delivered);

	if (delivered)
		timeout_ms = 0;
	if (next >= 0) {
		int t = (int)(next * 1000.0) + 1;
		if (timeout_ms < 0 || t < timeout_ms)
			timeout_ms = t;
	}
	/* With calls waiting for a connection, also wake when a socket can send. */
	for (size_t i = 0; i < n; i++) {
		pfd[i].fd = c->eps[i].sock;
		pfd[i].events = NN_POLLIN | (c->n_unsent ? NN_POLLOUT : 0);
		pfd[i].revents = 0;
	}
	int rc = nn_poll(pfd, (int)n, timeout_ms);
	if (rc < 0 && nn_errno() != EINTR)
		return -nn_errno();
	rc = drain_sockets(c);
	if (rc < 0)
		return rc;
	delivered += rc;
	run_timers(c, &delivered);
	return delivered;
}

/* ---- blocking ---------------------------------------------------------------------------- */

struct blocking {
	inferd_reply_fn fn;
	void *arg;
	bool done;
	int status;
	char *msg;
	size_t msglen;
	ProtobufCMessage **reply;              /* unary */
	const ProtobufCMessageDescriptor *desc;
};

static int on_blocking_frame(const struct inferd_reply *r, void *arg)
{
	struct blocking *b = arg;
	int rc = b->fn ? b->fn(r, b->arg) : 0;

	if (r->end_of_stream) {
		b->done = true;
		b->status = r->status;
		if (b->msg && b->msglen)
			snprintf(b->msg, b->msglen, "%s", r->status_message);
		if (b->desc && r->status == INFERD__V1__STATUS_CODE__STATUS_OK) {
			*b->reply = protobuf_c_message_unpack(b->desc, NULL, r->payload_len, r->payload);
			if (!*b->reply) {
				b->status = INFERD__V1__STATUS_CODE__STATUS_INTERNAL;
				if (b->msg && b->msglen)
					snprintf(b->msg, b->msglen, "the reply does not decode as %s",
					         b->desc->name);
			}
		}
	}
	return rc;
}

static int wait_blocking(struct inferd_client *c, struct blocking *b)
{
	while (!b->done) {
		int rc = inferd_client_poll(c, -1);
		if (rc < 0)
			return rc;
	}
	return b->status;
}

int inferd_client_call(struct inferd_client *c, int method, const void *payload, size_t len,
                       const struct inferd_call_options *opts, inferd_reply_fn fn, void *arg,
                       char *msg, size_t msglen)
{
	struct blocking b = { .fn = fn, .arg = arg, .msg = msg, .msglen = msglen };
	int rc = start_call(c, method, payload, len, opts, on_blocking_frame, &b, NULL);
	return rc < 0 ? rc : wait_blocking(c, &b);
}

int inferd_client_unary(struct inferd_client *c, int method, const ProtobufCMessage *req,
                        const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
                        const struct inferd_call_options *opts, char *msg, size_t msglen)
{
	struct blocking b = { .msg = msg, .msglen = msglen, .reply = reply, .desc = reply_desc };
	int rc;

	*reply = NULL;
	rc = inferd_client_start_msg(c, method, req, opts, on_blocking_frame, &b, NULL);
	return rc < 0 ? rc : wait_blocking(c, &b);
}
