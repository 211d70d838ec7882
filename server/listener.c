/* A nanomsg raw REP socket bound to one address, driven by the loop through NN_RCVFD. */
#include <errno.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <nanomsg/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server-internal.h"

/* Messages handled per readiness callback before yielding to other events. */
#define RX_BATCH 256

void listener_send(struct listener *lis, const uint8_t *header, size_t header_len,
                   const inferd_frame *frame)
{
	struct server_stats *st = &lis->srv->stats;
	uint8_t *buf;
	size_t len;
	int rc;

	if (inferd_frame_pack(frame, &buf, &len) < 0) {
		st->frames_dropped++;
		log_error("%s: out of memory encoding a reply to call %llu", lis->url,
		          (unsigned long long)frame->call_id);
		return;
	}
	/* A raw REP socket never blocks: it hands the frame to the peer's pipe, or drops it when
	 * the peer is gone or its pipe is full (see README, "Back-pressure"). */
	rc = inferd_wire_send(lis->sock, header, header_len, buf, len, NN_DONTWAIT);
	free(buf);
	if (rc < 0) {
		st->frames_dropped++;
		log_warn("%s: reply to call %llu not sent: %s", lis->url,
		         (unsigned long long)frame->call_id, nn_strerror(-rc));
		return;
	}
	st->frames_out++;
	st->bytes_out += len;
}

void listener_reject(struct listener *lis, const uint8_t *header, size_t header_len,
                     uint64_t call_id, int method, int status, const char *fmt, ...)
{
	inferd_frame f = INFERD_FRAME_INIT;
	char message[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(message, sizeof(message), fmt, ap);
	va_end(ap);
	f.call_id = call_id;
	f.method = (Inferd__V1__Method)method;
	f.status = (Inferd__V1__StatusCode)status;
	f.status_message = message;
	f.end_of_stream = true;
	lis->srv->stats.frames_rejected++;
	server_stats_count(lis->srv, method, status);
	log_debug("%s: call %llu rejected with %s: %s", lis->url, (unsigned long long)call_id,
	          inferd_status_name(status), message);
	listener_send(lis, header, header_len, &f);
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct listener *lis = arg;
	(void)fd;
	(void)what;

	for (int i = 0; i < RX_BATCH; i++) {
		struct inferd_wire_msg msg;
		int rc = inferd_wire_recv(lis->sock, &msg, NN_DONTWAIT);
		if (rc == -EAGAIN || rc == -EINTR)
			return;
		if (rc == -EPROTO) {
			lis->srv->stats.frames_rejected++;
			log_warn("%s: message without a valid SP header dropped", lis->url);
			continue;
		}
		if (rc < 0) {
			log_error("%s: receive failed: %s", lis->url, nn_strerror(-rc));
			return;
		}
		lis->srv->stats.frames_in++;
		lis->srv->stats.bytes_in += msg.body_len;
		server_dispatch(lis->srv, lis, &msg);
		inferd_wire_msg_fini(&msg);
	}
	/* More may be waiting: the fd stays readable, so the loop calls back after other work. */
}

void listener_set_max_frame(struct listener *lis, size_t max_frame_bytes)
{
	/* nanomsg drops the connection of a peer that sends more than NN_RCVMAXSIZE; frames
	 * between max_frame_bytes and this get a RESOURCE_EXHAUSTED reply instead. */
	int maxsize = (int)(max_frame_bytes * 2 + 65536);
	nn_setsockopt(lis->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsize, sizeof(maxsize));
}

void listener_check_broken(struct listener *lis)
{
	uint64_t n = nn_get_statistic(lis->sock, NN_STAT_BROKEN_CONNECTIONS);
	if (n == (uint64_t)-1 || n <= lis->broken_seen)
		return;
	log_warn("%s: nanomsg closed %llu connection(s) on error: a peer sent a frame over twice "
	         "max_frame_bytes, or the network failed; their calls in flight are lost", lis->url,
	         (unsigned long long)(n - lis->broken_seen));
	lis->broken_seen = n;
}

int listener_open(struct listener *lis, struct inferd_server *srv, const char *url,
                  char *err, size_t errlen)
{
	int rcvfd;
	size_t sz = sizeof(rcvfd);
	int bufsize = 4 << 20;
	int nodelay = 1; /* small frames must not wait for Nagle's algorithm (~40 ms stalls) */

	memset(lis, 0, sizeof(*lis));
	lis->srv = srv;
	lis->sock = -1;
	lis->url = strdup(url);
	if (!lis->url)
		return -ENOMEM;
	lis->sock = nn_socket(AF_SP_RAW, NN_REP);
	if (lis->sock < 0)
		goto nn_fail;
	listener_set_max_frame(lis, srv->limits.max_frame_bytes);
	if (nn_setsockopt(lis->sock, NN_SOL_SOCKET, NN_SNDBUF, &bufsize, sizeof(bufsize)) < 0 ||
	    nn_setsockopt(lis->sock, NN_SOL_SOCKET, NN_RCVBUF, &bufsize, sizeof(bufsize)) < 0 ||
	    nn_setsockopt(lis->sock, NN_TCP, NN_TCP_NODELAY, &nodelay, sizeof(nodelay)) < 0)
		goto nn_fail;
	if (nn_bind(lis->sock, url) < 0)
		goto nn_fail;
	if (nn_getsockopt(lis->sock, NN_SOL_SOCKET, NN_RCVFD, &rcvfd, &sz) < 0)
		goto nn_fail;
	lis->rx_ev = event_new(srv->base, rcvfd, EV_READ | EV_PERSIST, on_readable, lis);
	if (!lis->rx_ev || event_add(lis->rx_ev, NULL) < 0) {
		snprintf(err, errlen, "%s: cannot watch the socket", url);
		listener_close(lis);
		return -ENOMEM;
	}
	return 0;

nn_fail:;
	int e = nn_errno();
	if (e == EADDRINUSE)
		snprintf(err, errlen, "cannot listen on %s: address already in use (is another "
		         "inferd running?)", url);
	else
		snprintf(err, errlen, "cannot listen on %s: %s", url, nn_strerror(e));
	listener_close(lis);
	return -e;
}

void listener_close(struct listener *lis)
{
	if (lis->rx_ev)
		event_free(lis->rx_ev);
	if (lis->sock >= 0)
		nn_close(lis->sock);
	free(lis->url);
	memset(lis, 0, sizeof(*lis));
	lis->sock = -1;
}
