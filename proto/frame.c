/* Frames of the inferd.v1 protocol: names, encode/decode, nanomsg SP headers. */
#include "frame.h"

#include <errno.h>
#include <nanomsg/nn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- names ------------------------------------------------------------------------------- */

static const char *const method_names[] = {
	[INFERD__V1__METHOD__METHOD_UNSPECIFIED] = "Unspecified",
	[INFERD__V1__METHOD__METHOD_HEALTH] = "Health",
	[INFERD__V1__METHOD__METHOD_LIST_MODELS] = "ListModels",
	[INFERD__V1__METHOD__METHOD_STATS] = "Stats",
	[INFERD__V1__METHOD__METHOD_CANCEL] = "Cancel",
	[INFERD__V1__METHOD__METHOD_GENERATE] = "Generate",
	[INFERD__V1__METHOD__METHOD_GENERATE_IMAGE] = "GenerateImage",
	[INFERD__V1__METHOD__METHOD_IMAGE_STREAM] = "ImageStream",
	[INFERD__V1__METHOD__METHOD_LOAD_ADAPTER] = "LoadAdapter",
	[INFERD__V1__METHOD__METHOD_UNLOAD_ADAPTER] = "UnloadAdapter",
	[INFERD__V1__METHOD__METHOD_TOKENIZE] = "Tokenize",
	[INFERD__V1__METHOD__METHOD_ECHO] = "Echo",
	[INFERD__V1__METHOD__METHOD_KEEPALIVE] = "KeepAlive",
};
#define N_METHODS (sizeof(method_names) / sizeof(method_names[0]))

static const char *const status_names[] = {
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
};
#define N_STATUSES (sizeof(status_names) / sizeof(status_names[0]))

const char *inferd_method_name(int method)
{
	if (method < 0 || (size_t)method >= N_METHODS || !method_names[method])
		return "Unknown";
	return method_names[method];
}

const char *inferd_status_name(int status)
{
	if (status < 0 || (size_t)status >= N_STATUSES)
		return "UNKNOWN";
	return status_names[status];
}

int inferd_method_from_name(const char *name)
{
	for (size_t i = 1; i < N_METHODS; i++)
		if (method_names[i] && strcasecmp(name, method_names[i]) == 0)
			return (int)i;
	return -1;
}

int inferd_method_is_streaming(int method)
{
	switch (method) {
	case INFERD__V1__METHOD__METHOD_GENERATE:
	case INFERD__V1__METHOD__METHOD_GENERATE_IMAGE:
	case INFERD__V1__METHOD__METHOD_IMAGE_STREAM:
	case INFERD__V1__METHOD__METHOD_ECHO:
		return 1;
	default:
		return 0;
	}
}

/* ---- encode / decode --------------------------------------------------------------------- */

int inferd_frame_pack(const inferd_frame *frame, uint8_t **out, size_t *len)
{
	size_t n = inferd__v1__frame__get_packed_size(frame);
	uint8_t *buf = malloc(n ? n : 1);

	if (!buf)
		return -ENOMEM;
	*len = inferd__v1__frame__pack(frame, buf);
	*out = buf;
	return 0;
}

int inferd_frame_unpack(const uint8_t *buf, size_t len, size_t max_bytes, inferd_frame **out,
                        char *err, size_t errlen)
{
	*out = NULL;
	if (max_bytes && len > max_bytes) {
		snprintf(err, errlen, "frame of %zu bytes is over the limit of %zu bytes", len,
		         max_bytes);
		return -EMSGSIZE;
	}
	*out = inferd__v1__frame__unpack(NULL, len, buf);
	if (!*out) {
		snprintf(err, errlen, "%zu bytes do not decode as an inferd.v1.Frame", len);
		return -EBADMSG;
	}
	return 0;
}

void inferd_frame_free(inferd_frame *frame)
{
	if (frame)
		inferd__v1__frame__free_unpacked(frame, NULL);
}

const char *inferd_frame_meta(const inferd_frame *frame, const char *key)
{
	for (size_t i = 0; i < frame->n_metadata; i++)
		if (frame->metadata[i]->key && strcmp(frame->metadata[i]->key, key) == 0)
			return frame->metadata[i]->value;
	return NULL;
}

/* ---- nanomsg raw sockets ----------------------------------------------------------------- */

/* nanomsg carries the SP header of a raw socket's message as a control message of level
 * PROTO_SP, type SP_HDR, whose data is a size_t length followed by the header bytes. */

int inferd_wire_recv(int sock, struct inferd_wire_msg *msg, int flags)
{
	void *body = NULL;
	void *control = NULL;
	struct nn_iovec iov = { .iov_base = &body, .iov_len = NN_MSG };
	struct nn_msghdr hdr = {
		.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = NN_MSG,
	};
	int n = nn_recvmsg(sock, &hdr, flags);

	memset(msg, 0, sizeof(*msg));
	if (n < 0)
		return -nn_errno();

	int rc = -EPROTO;
	for (struct nn_cmsghdr *c = NN_CMSG_FIRSTHDR(&hdr); c; c = NN_CMSG_NXTHDR(&hdr, c)) {
		if (c->cmsg_level != PROTO_SP || c->cmsg_type != SP_HDR)
			continue;
		size_t data_len = c->cmsg_len - NN_CMSG_LEN(0);
		size_t sp_len;
		if (data_len < sizeof(size_t))
			break;
		memcpy(&sp_len, NN_CMSG_DATA(c), sizeof(sp_len));
		if (sp_len == 0 || sp_len > INFERD_SP_HEADER_MAX || sp_len > data_len - sizeof(size_t))
			break;
		memcpy(msg->header, NN_CMSG_DATA(c) + sizeof(size_t), sp_len);
		msg->header_len = sp_len;
		rc = 0;
		break;
	}
	if (control)
		nn_freemsg(control);
	if (rc < 0) {
		nn_freemsg(body);
		return rc;
	}
	msg->body = body;
	msg->body_len = (size_t)n;
	return 0;
}

void inferd_wire_msg_fini(struct inferd_wire_msg *msg)
{
	if (msg->body)
		nn_freemsg(msg->body);
	msg->body = NULL;
	msg->body_len = 0;
}

int inferd_wire_send(int sock, const uint8_t *header, size_t header_len, const void *body,
                     size_t body_len, int flags)
{
	/* Room for the cmsg header, the size_t length and the SP header, suitably aligned. */
	union {
		unsigned char bytes[NN_CMSG_SPACE(sizeof(size_t) + INFERD_SP_HEADER_MAX)];
		size_t align;
	} control;
	struct nn_iovec iov = { .iov_base = (void *)body, .iov_len = body_len };
	struct nn_msghdr hdr = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (header_len == 0 || header_len > INFERD_SP_HEADER_MAX)
		return -EINVAL;
	memset(&control, 0, sizeof(control));
	hdr.msg_control = control.bytes;
	hdr.msg_controllen = NN_CMSG_SPACE(sizeof(size_t) + header_len);

	struct nn_cmsghdr *c = NN_CMSG_FIRSTHDR(&hdr);
	c->cmsg_len = NN_CMSG_LEN(sizeof(size_t) + header_len);
	c->cmsg_level = PROTO_SP;
	c->cmsg_type = SP_HDR;
	memcpy(NN_CMSG_DATA(c), &header_len, sizeof(size_t));
	memcpy(NN_CMSG_DATA(c) + sizeof(size_t), header, header_len);

	if (nn_sendmsg(sock, &hdr, flags) < 0)
		return -nn_errno();
	return 0;
}

void inferd_wire_request_id(uint32_t id, uint8_t out[4])
{
	id |= 0x80000000u;
	out[0] = (uint8_t)(id >> 24);
	out[1] = (uint8_t)(id >> 16);
	out[2] = (uint8_t)(id >> 8);
	out[3] = (uint8_t)id;
}
