/* Frames of the inferd.v1 protocol over nanomsg raw sockets.
 *
 * Shared by the daemon and the client library: names of methods and statuses, frame encode /
 * decode with a size limit, and the SP header (the nanomsg request id / backtrace) that raw
 * REQ/REP sockets carry next to every message.
 *
 * Errors: functions return 0 or a negative errno-style code; decode also writes a message.
 */
#ifndef INFERD_PROTO_FRAME_H
#define INFERD_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "inferd.pb-c.h"

typedef Inferd__V1__Frame inferd_frame;

#define INFERD_FRAME_INIT INFERD__V1__FRAME__INIT

/* The largest SP header we accept: nanomsg REP backtraces are 4 bytes per hop plus the 4-byte
 * request id; 8 hops is more than any device chain in practice. */
#define INFERD_SP_HEADER_MAX 32

/* @return a static name such as "Health", or "Unknown" for values outside the enum. */
const char *inferd_method_name(int method);
/* @return a static name such as "DEADLINE_EXCEEDED", or "UNKNOWN". */
const char *inferd_status_name(int status);
/* @return the method value for a name as printed by inferd_method_name (case-insensitive),
 * or -1. */
int inferd_method_from_name(const char *name);
/* @return 1 when the method answers a stream of frames, 0 for unary methods. */
int inferd_method_is_streaming(int method);

/* Serializes a frame into a new buffer.
 * @return 0 and *out (free with free()) and *len, or -ENOMEM. */
int inferd_frame_pack(const inferd_frame *frame, uint8_t **out, size_t *len);

/* Decodes one frame of at most max_bytes bytes (0 = no limit).
 * @return 0 and *out (free with inferd_frame_free()), -EMSGSIZE when over the limit, -EBADMSG
 * when the bytes are not a frame; err receives a message either way. */
int inferd_frame_unpack(const uint8_t *buf, size_t len, size_t max_bytes, inferd_frame **out,
                        char *err, size_t errlen);

void inferd_frame_free(inferd_frame *frame);

/* Looks a metadata key up. @return its value (owned by the frame) or NULL. */
const char *inferd_frame_meta(const inferd_frame *frame, const char *key);

/* ---- nanomsg raw sockets ----------------------------------------------------------------- */

/* One received message: body and SP header. Owned by the caller; release with
 * inferd_wire_msg_fini(). */
struct inferd_wire_msg {
	void *body;          /* nanomsg-allocated body */
	size_t body_len;
	uint8_t header[INFERD_SP_HEADER_MAX];
	size_t header_len;
};

/* Receives one message from a raw socket with its SP header.
 * @return 0, -EAGAIN when nothing is waiting (with NN_DONTWAIT), -EPROTO when the header is
 * missing or too long (the message is dropped), or another negative errno. */
int inferd_wire_recv(int sock, struct inferd_wire_msg *msg, int flags);

void inferd_wire_msg_fini(struct inferd_wire_msg *msg);

/* Sends body with the given SP header on a raw socket.
 * @return 0, -EAGAIN when the socket cannot take it now (with NN_DONTWAIT), or a negative
 * errno. */
int inferd_wire_send(int sock, const uint8_t *header, size_t header_len, const void *body,
                     size_t body_len, int flags);

/* The 4-byte request id a raw REQ socket puts in its header: big-endian, top bit set. */
void inferd_wire_request_id(uint32_t id, uint8_t out[4]);

#endif
