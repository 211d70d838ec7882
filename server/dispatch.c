/* From a received message to a running call: decode, check, route to the method. */
#include <string.h>

#include "log.h"
#include "server-internal.h"

/* The call id of a frame too large to decode: protobuf-c writes fields in number order, so a
 * non-zero call_id (field 1, varint) comes first. 0 when absent; clients then match the reply
 * by the request id of the SP header. */
static uint64_t peek_call_id(const uint8_t *buf, size_t len)
{
	uint64_t v = 0;

	if (len < 2 || buf[0] != 0x08)
		return 0;
	for (size_t i = 1, shift = 0; i < len && shift < 64; i++, shift += 7) {
		v |= (uint64_t)(buf[i] & 0x7f) << shift;
		if (!(buf[i] & 0x80))
			return v;
	}
	return 0;
}

void server_dispatch(struct inferd_server *srv, struct listener *lis,
                     const struct inferd_wire_msg *msg)
{
	const uint8_t *hdr = msg->header;
	size_t hlen = msg->header_len;
	inferd_frame *f = NULL;
	char err[256];
	int rc;

	rc = inferd_frame_unpack(msg->body, msg->body_len, srv->limits.max_frame_bytes, &f, err,
	                         sizeof(err));
	if (rc == -EMSGSIZE) {
		listener_reject(lis, hdr, hlen, peek_call_id(msg->body, msg->body_len), 0,
		                INFERD__V1__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED, "%s", err);
		return;
	}
	if (rc < 0) {
		listener_reject(lis, hdr, hlen, 0, 0, INFERD__V1__STATUS_CODE__STATUS_INVALID_ARGUMENT,
		                "%s", err);
		return;
	}

	int method = (int)f->method;
	peer_heard(&srv->peers, lis, hdr, hlen, server_now());
	if (method == INFERD__V1__METHOD__METHOD_KEEPALIVE)
		goto out; /* not a call: it only refreshed the peer */
	if (f->call_id == 0) {
		listener_reject(lis, hdr, hlen, 0, method,
		                INFERD__V1__STATUS_CODE__STATUS_INVALID_ARGUMENT,
		                "frame has no call_id (it must be non-zero)");
		goto out;
	}
	/* Authentication comes before anything that reveals or does work. */
	if (!auth_check(srv->auth, inferd_frame_meta(f, "api-key"))) {
		listener_reject(lis, hdr, hlen, f->call_id, method,
		                INFERD__V1__STATUS_CODE__STATUS_UNAUTHENTICATED,
		                inferd_frame_meta(f, "api-key") ? "invalid API key"
		                                                 : "missing API key (metadata 'api-key')");
		goto out;
	}
	const struct method_entry *m = method_lookup(method);
	if (!m) {
		if (method > 0 && method <= INFERD__V1__METHOD__METHOD_ECHO)
			listener_reject(lis, hdr, hlen, f->call_id, method,
			                INFERD__V1__STATUS_CODE__STATUS_UNIMPLEMENTED,
			                "method %s is not served by this daemon (no model of that "
			                "kind is loaded)", inferd_method_name(method));
		else
			listener_reject(lis, hdr, hlen, f->call_id, method,
			                INFERD__V1__STATUS_CODE__STATUS_UNIMPLEMENTED,
			                "unknown method %d", method);
		goto out;
	}
	if (srv->state != SERVER_STATE_SERVING && !m->while_draining) {
		listener_reject(lis, hdr, hlen, f->call_id, method,
		                INFERD__V1__STATUS_CODE__STATUS_UNAVAILABLE,
		                "the daemon is shutting down and takes no new %s calls",
		                inferd_method_name(method));
		goto out;
	}
	if (call_table_find(&srv->calls, lis, hdr, hlen, f->call_id)) {
		listener_reject(lis, hdr, hlen, f->call_id, method,
		                INFERD__V1__STATUS_CODE__STATUS_ALREADY_EXISTS,
		                "call id %llu is already in flight on this connection",
		                (unsigned long long)f->call_id);
		goto out;
	}
	if (srv->calls.count >= srv->limits.max_calls) {
		listener_reject(lis, hdr, hlen, f->call_id, method,
		                INFERD__V1__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED,
		                "too many calls in flight (max_calls = %u)", srv->limits.max_calls);
		goto out;
	}
	uint64_t deadline_ms = f->deadline_ms ? f->deadline_ms : srv->limits.default_deadline_ms;
	struct call *c = call_new(srv, lis, hdr, hlen, f->call_id, method, deadline_ms);
	if (!c) {
		listener_reject(lis, hdr, hlen, f->call_id, method,
		                INFERD__V1__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED,
		                "out of memory for a new call");
		goto out;
	}
	if (call_set_keepalive(c, f->keepalive_ms) < 0) {
		call_finish(c, INFERD__V1__STATUS_CODE__STATUS_RESOURCE_EXHAUSTED, NULL,
		            "out of memory for the call's keepalive");
		goto out;
	}
	log_debug("%s: call %llu %s", lis->url, (unsigned long long)f->call_id,
	          inferd_method_name(method));
	/* The handler owns c from here: it finishes it now or later. */
	m->handler(c, f->payload.data, f->payload.len);
out:
	inferd_frame_free(f);
}
