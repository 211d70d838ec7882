/* Relays connections accepted on an activated AF_UNIX socket to the daemon's nanomsg ipc
 * socket, byte for byte (bufferevent pairs with bounded buffers). */
#include "relay.h"

#include <errno.h>
#include <stdbool.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

/* After accept() fails for lack of descriptors or memory, wait this long before accepting
 * again (the socket stays readable: without a pause the loop would spin). */
#define ACCEPT_PAUSE_MS 200

enum relay_conn_state {
	RELAY_CONN_OPEN,      /* copying both ways */
	RELAY_CONN_FLUSHING,  /* one side closed: writing what it sent to the other, then close */
	RELAY_CONN_DEAD,      /* waiting to be freed by reap() */
};

enum { SIDE_CLIENT, SIDE_DAEMON };

struct relay_conn {
	struct relay *r;
	struct bufferevent *side[2];  /* SIDE_CLIENT: accepted; SIDE_DAEMON: to nanomsg */
	enum relay_conn_state state;
	bool connected;               /* the daemon side's connect() completed */
	struct relay_conn *prev, *next;
};

struct relay {
	struct event_base *base;
	struct evconnlistener *lev;
	struct sockaddr_un target;
	socklen_t target_len;
	struct relay_conn *conns;     /* open and flushing */
	struct relay_conn *dead;      /* freed at the next reap */
	struct event *reap_ev, *resume_ev;
	struct relay_stats stats;
};

/* ---- connections ------------------------------------------------------------------------- */

static void conn_unlink(struct relay_conn *c, struct relay_conn **head)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

static void conn_push(struct relay_conn *c, struct relay_conn **head)
{
	c->prev = NULL;
	c->next = *head;
	if (*head)
		(*head)->prev = c;
	*head = c;
}

static void conn_free(struct relay_conn *c)
{
	for (int i = 0; i < 2; i++)
		if (c->side[i])
			bufferevent_free(c->side[i]);
	free(c);
}

/* The one place a connection changes state. Dead connections are freed by reap(), never
 * inside their own callbacks. */
static void conn_set_state(struct relay_conn *c, enum relay_conn_state to)
{
	struct relay *r = c->r;

	if (c->state == RELAY_CONN_DEAD || c->state == to)
		return;
	c->state = to;
	if (to == RELAY_CONN_FLUSHING)
		return;
	for (int i = 0; i < 2; i++)
		bufferevent_disable(c->side[i], EV_READ | EV_WRITE);
	conn_unlink(c, &r->conns);
	conn_push(c, &r->dead);
	r->stats.active--;
	event_active(r->reap_ev, EV_TIMEOUT, 0);
}

static int side_of(const struct relay_conn *c, const struct bufferevent *bev)
{
	return bev == c->side[SIDE_CLIENT] ? SIDE_CLIENT : SIDE_DAEMON;
}

/* Moves what one side sent to the other side's output; stops reading a side whose peer has
 * RELAY_HIGH_WATER bytes waiting. */
static void on_read(struct bufferevent *bev, void *arg)
{
	struct relay_conn *c = arg;
	int from = side_of(c, bev);
	struct bufferevent *to = c->side[1 - from];
	struct evbuffer *in = bufferevent_get_input(bev), *out = bufferevent_get_output(to);
	size_t n = evbuffer_get_length(in);

	if (c->state != RELAY_CONN_OPEN)
		return;
	if (evbuffer_add_buffer(out, in) < 0) {
		conn_set_state(c, RELAY_CONN_DEAD);
		return;
	}
	if (from == SIDE_CLIENT)
		c->r->stats.bytes_up += n;
	else
		c->r->stats.bytes_down += n;
	if (evbuffer_get_length(out) >= RELAY_HIGH_WATER)
		bufferevent_disable(bev, EV_READ);
}

/* A side's output fell to its low-water mark: half of RELAY_HIGH_WATER while open (read the
 * other side again), zero while flushing (all written: close). */
static void on_write(struct bufferevent *bev, void *arg)
{
	struct relay_conn *c = arg;
	int side = side_of(c, bev);

	if (c->state == RELAY_CONN_OPEN)
		bufferevent_enable(c->side[1 - side], EV_READ);
	else if (c->state == RELAY_CONN_FLUSHING &&
	         evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_set_state(c, RELAY_CONN_DEAD);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct relay_conn *c = arg;
	int side = side_of(c, bev);
	struct bufferevent *other = c->side[1 - side];

	if (what & BEV_EVENT_CONNECTED) {
		c->connected = true;
		return;
	}
	if (side == SIDE_DAEMON && !c->connected) {
		c->r->stats.failed++;
		log_warn("relay: cannot connect to the daemon's socket %s: %s",
		         c->r->target.sun_path, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		conn_set_state(c, RELAY_CONN_DEAD);
		return;
	}
	if (c->state != RELAY_CONN_OPEN || (what & BEV_EVENT_ERROR)) {
		conn_set_state(c, RELAY_CONN_DEAD);
		return;
	}
	/* EOF: pass on what this side still sent, then close once the other side wrote it. */
	on_read(bev, c);
	bufferevent_disable(bev, EV_READ | EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(other)) == 0) {
		conn_set_state(c, RELAY_CONN_DEAD);
		return;
	}
	conn_set_state(c, RELAY_CONN_FLUSHING);
	bufferevent_setwatermark(other, EV_WRITE, 0, 0);
	bufferevent_disable(other, EV_READ);
	bufferevent_enable(other, EV_WRITE);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	(void)fd;
	(void)what;
	while (r->dead) {
		struct relay_conn *c = r->dead;
		conn_unlink(c, &r->dead);
		conn_free(c);
	}
}

/* ---- accepting --------------------------------------------------------------------------- */

static void on_accept(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	struct relay *r = arg;
	struct relay_conn *c = calloc(1, sizeof(*c));
	(void)lev;
	(void)sa;
	(void)salen;

	if (!c) {
		log_error("relay: out of memory: connection closed");
		evutil_closesocket(fd);
		return;
	}
	c->r = r;
	c->side[SIDE_CLIENT] = bufferevent_socket_new(r->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->side[SIDE_CLIENT]) {
		evutil_closesocket(fd);
		goto fail;
	}
	c->side[SIDE_DAEMON] = bufferevent_socket_new(r->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!c->side[SIDE_DAEMON])
		goto fail;
	for (int i = 0; i < 2; i++) {
		bufferevent_setcb(c->side[i], on_read, on_write, on_event, c);
		bufferevent_setwatermark(c->side[i], EV_WRITE, RELAY_HIGH_WATER / 2, 0);
		bufferevent_enable(c->side[i], EV_READ | EV_WRITE);
	}
	conn_push(c, &r->conns);
	r->stats.accepted++;
	r->stats.active++;
	if (bufferevent_socket_connect(c->side[SIDE_DAEMON], (struct sockaddr *)&r->target,
	                               (int)r->target_len) < 0) {
		r->stats.failed++;
		log_warn("relay: cannot connect to the daemon's socket %s: %s", r->target.sun_path,
		         strerror(errno));
		conn_set_state(c, RELAY_CONN_DEAD);
	}
	return;
fail:
	log_error("relay: out of memory: connection closed");
	conn_free(c);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct relay *r = arg;
	(void)fd;
	(void)what;
	evconnlistener_enable(r->lev);
}

static void on_accept_error(struct evconnlistener *lev, void *arg)
{
	struct relay *r = arg;
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { .tv_sec = 0, .tv_usec = ACCEPT_PAUSE_MS * 1000 };

	log_error("relay: accept failed: %s; pausing %d ms", strerror(e), ACCEPT_PAUSE_MS);
	evconnlistener_disable(lev);
	if (evtimer_add(r->resume_ev, &tv) < 0)
		evconnlistener_enable(lev);
}

/* ---- lifecycle --------------------------------------------------------------------------- */

int relay_new(struct event_base *base, int listen_fd, const char *target_path,
              struct relay **out, char *err, size_t errlen)
{
	struct relay *r;

	*out = NULL;
	if (strlen(target_path) >= sizeof(r->target.sun_path)) {
		snprintf(err, errlen, "relay: socket path too long: %s", target_path);
		close(listen_fd);
		return -ENAMETOOLONG;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		close(listen_fd);
		goto nomem;
	}
	r->base = base;
	r->target.sun_family = AF_UNIX;
	memcpy(r->target.sun_path, target_path, strlen(target_path) + 1);
	r->target_len = (socklen_t)sizeof(r->target);
	r->reap_ev = event_new(base, -1, 0, on_reap, r);
	r->resume_ev = evtimer_new(base, on_resume, r);
	if (!r->reap_ev || !r->resume_ev || evutil_make_socket_nonblocking(listen_fd) < 0) {
		close(listen_fd);
		relay_free(r);
		goto nomem;
	}
	/* backlog 0: the socket already listens (the manager called listen()). */
	r->lev = evconnlistener_new(base, on_accept, r, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	                            0, listen_fd);
	if (!r->lev) {
		close(listen_fd);
		relay_free(r);
		goto nomem;
	}
	evconnlistener_set_error_cb(r->lev, on_accept_error);
	*out = r;
	return 0;
nomem:
	snprintf(err, errlen, "relay: out of memory");
	return -ENOMEM;
}

void relay_free(struct relay *r)
{
	if (!r)
		return;
	if (r->lev)
		evconnlistener_free(r->lev);
	while (r->conns) {
		struct relay_conn *c = r->conns;
		conn_unlink(c, &r->conns);
		conn_free(c);
	}
	while (r->dead) {
		struct relay_conn *c = r->dead;
		conn_unlink(c, &r->dead);
		conn_free(c);
	}
	if (r->reap_ev)
		event_free(r->reap_ev);
	if (r->resume_ev)
		event_free(r->resume_ev);
	free(r);
}

void relay_get_stats(const struct relay *r, struct relay_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (r)
		*out = r->stats;
}
