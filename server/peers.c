/* Client liveness for calls with a keepalive promise (Frame.keepalive_ms).
 *
 * nanomsg never tells the daemon that a peer went away: replies to a closed pipe are dropped
 * silently. A client that promises to send something at least every keepalive_ms lets the
 * daemon notice: every frame received from a peer refreshes its last_heard time, and a call
 * whose peer has been silent for KEEPALIVE_MISSES promises is ended CANCELLED, which frees its
 * sequence (KV blocks) or image job at the worker's next iteration.
 *
 * A peer is (listener, SP backtrace without its request id); entries exist only while calls
 * with a keepalive reference them, so the table stays as small as those calls. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server-internal.h"

#define KEEPALIVE_MISSES 3

static size_t key_len(size_t header_len)
{
	return header_len >= 4 ? header_len - 4 : 0;
}

static size_t bucket(const struct listener *lis, const uint8_t *header, size_t header_len)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)lis;
	for (size_t i = 0; i < key_len(header_len); i++)
		h = (h ^ header[i]) * 1099511628211ull;
	return (size_t)(h % PEER_BUCKETS);
}

static struct peer *find(struct peer_table *t, const struct listener *lis, const uint8_t *header,
                         size_t header_len, size_t *b)
{
	size_t kl = key_len(header_len);
	*b = bucket(lis, header, header_len);
	for (struct peer *p = t->buckets[*b]; p; p = p->next)
		if (p->lis == lis && p->key_len == kl && memcmp(p->key, header, kl) == 0)
			return p;
	return NULL;
}

void peer_heard(struct peer_table *t, const struct listener *lis, const uint8_t *header,
                size_t header_len, double now)
{
	size_t b;
	struct peer *p = t->count ? find(t, lis, header, header_len, &b) : NULL;
	if (p)
		p->last_heard = now;
}

struct peer *peer_ref(struct peer_table *t, struct listener *lis, const uint8_t *header,
                      size_t header_len, double now)
{
	size_t b;
	struct peer *p = find(t, lis, header, header_len, &b);
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return NULL;
		p->lis = lis;
		p->key_len = key_len(header_len);
		memcpy(p->key, header, p->key_len);
		p->bucket = b;
		p->next = t->buckets[b];
		t->buckets[b] = p;
		t->count++;
	}
	p->last_heard = now;
	p->refs++;
	return p;
}

void peer_unref(struct peer_table *t, struct peer *p)
{
	if (!p || --p->refs > 0)
		return;
	for (struct peer **pp = &t->buckets[p->bucket]; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			t->count--;
			break;
		}
	}
	free(p);
}

static void check_one(struct call *c, void *arg)
{
	const double *now = arg;
	if (!c->peer || c->keepalive_ms == 0 || c->state != CALL_STATE_RUNNING)
		return;
	double silent = *now - c->peer->last_heard;
	if (silent * 1000.0 <= (double)c->keepalive_ms * KEEPALIVE_MISSES)
		return;
	log_info("%s: call %llu (%s): the client sent nothing for %.1f s (keepalive %u ms): "
	         "taking it as gone", c->lis->url, (unsigned long long)c->call_id,
	         inferd_method_name(c->method), silent, c->keepalive_ms);
	c->srv->stats.calls_abandoned++;
	call_finish(c, INFERD__V1__STATUS_CODE__STATUS_CANCELLED, NULL,
	            "no frame from the client for %.1f s (keepalive %u ms)", silent, c->keepalive_ms);
}

void peers_check(struct inferd_server *srv)
{
	if (srv->peers.count == 0)
		return;
	double now = server_now();
	call_table_foreach(&srv->calls, check_one, &now);
}
