/* POST /v1/images/generations (OpenAI-compatible): a JSON request, answered once all images
 * are done with {"created", "data": [{"b64_json", "seed"}...]}. Base64 through OpenSSL's
 * EVP_EncodeBlock/EVP_DecodeBlock, JSON through jansson.
 *
 * Fields: prompt (required), model, n (1..16), size "WxH", response_format "b64_json" (the only
 * one: the daemon keeps no files to point a URL at); extensions as other servers have them:
 * negative_prompt, steps (or num_inference_steps), guidance_scale, seed, scheduler, and
 * init_image (base64 PNG or JPEG) with strength for image-to-image. Unknown fields are ignored,
 * as OpenAI's optional ones (quality, style, user) are. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http-internal.h"
#include "images.h"
#include "log.h"
#include "server-internal.h"

#define EP METRICS_EP_IMAGES
#define STATUS(x) INFERD__V1__STATUS_CODE__STATUS_##x

struct http_img {
	struct http_server *hs;
	struct http_conn *conn;           /* NULL once the connection is gone */
	struct evhttp_request *req;
	struct image_gen *gen;            /* NULL once it ended */
	json_t *data;                     /* the images so far */
	json_int_t created;
	struct http_img *prev, *next;
};

static void img_release(struct http_img *g)
{
	struct http_server *hs = g->hs;

	if (g->prev)
		g->prev->next = g->next;
	else
		hs->imgs = g->next;
	if (g->next)
		g->next->prev = g->prev;
	hs->n_imgs--;
	if (g->conn) {
		g->conn->img = NULL;
		evhttp_connection_set_timeout_tv(g->conn->evcon, &hs->timeout);
	}
	json_decref(g->data);
	free(g);
	if (!hs->closing)
		server_call_ended(hs->srv);
}

static json_t *b64_json(const void *data, size_t len)
{
	if (len > (size_t)1 << 30)
		return NULL;
	unsigned char *out = malloc(4 * ((len + 2) / 3) + 1);
	json_t *s = NULL;
	if (out) {
		int n = EVP_EncodeBlock(out, data, (int)len);
		s = json_stringn((const char *)out, (size_t)n);
		free(out);
	}
	return s;
}

/* Base64 text -> bytes (malloc'd). @return 0, -EINVAL (not base64), -ENOMEM. */
static int b64_decode(const char *s, size_t len, unsigned char **out, size_t *out_len)
{
	/* data: URLs as browsers send them: data:image/png;base64,.... */
	const char *comma = len > 5 && strncmp(s, "data:", 5) == 0 ? memchr(s, ',', len) : NULL;
	if (comma) {
		len -= (size_t)(comma + 1 - s);
		s = comma + 1;
	}
	if (len == 0 || len % 4 || len > (size_t)1 << 30)
		return -EINVAL;
	unsigned char *buf = malloc(len / 4 * 3 + 1);
	if (!buf)
		return -ENOMEM;
	int n = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)len);
	if (n < 0) {
		free(buf);
		return -EINVAL;
	}
	size_t pad = (s[len - 1] == '=') + (s[len - 2] == '=');
	*out = buf;
	*out_len = (size_t)n - pad;
	return 0;
}

static void on_image(const struct image_event *e, void *arg)
{
	struct http_img *g = arg;
	json_t *b64 = b64_json(e->png, e->png_len);
	json_t *item = b64 ? json_pack("{s:o, s:I, s:i}", "b64_json", b64, "seed",
	                               (json_int_t)e->seed, "index", e->index) : NULL;
	if (item)
		json_array_append_new(g->data, item);
	else
		log_warn("http: out of memory for an image's base64; it is left out");
}

static int http_status_of(int grpc)
{
	switch (grpc) {
	case STATUS(INVALID_ARGUMENT): return 400;
	case STATUS(NOT_FOUND): return 404;
	case STATUS(RESOURCE_EXHAUSTED): return 429;
	case STATUS(UNIMPLEMENTED): return 501;
	default: return 500;
	}
}

static void on_end(const struct image_event *e, int status, void *arg)
{
	struct http_img *g = arg;
	struct http_server *hs = g->hs;
	struct evhttp_request *req = g->req;

	g->gen = NULL;
	if (status != STATUS(OK)) {
		int hst = http_status_of(status);
		img_release(g);
		http_reply_error(hs, req, hst, NULL, NULL, hst == 429 ? "queue_full" : NULL, EP, "%s",
		                 e->message[0] ? e->message : "image generation failed");
		return;
	}
	json_t *body = json_pack("{s:I, s:O, s:{s:f, s:f, s:i}}", "created", g->created, "data",
	                         g->data, "usage", "total_seconds", e->total_s, "queue_seconds",
	                         e->queue_s, "steps", e->total);
	img_release(g);
	http_reply_json(hs, req, body ? 200 : 500, body, EP);
}

static const struct image_sink http_sink = { .image = on_image, .end = on_end };

void http_img_client_gone(struct http_img *g)
{
	struct evhttp_request *req = g->req;
	bool detached = evhttp_request_get_connection(req) == NULL;

	image_gen_abandon(g->gen);
	g->gen = NULL;
	g->conn = NULL; /* being freed */
	metrics_count_http(g->hs->srv->metrics, EP, 499);
	img_release(g);
	if (detached)
		evhttp_request_free(req);
}

void http_img_abort(struct http_img *g, bool reply)
{
	struct http_server *hs = g->hs;
	struct evhttp_request *req = g->req;

	image_gen_abandon(g->gen);
	g->gen = NULL;
	img_release(g);
	if (reply)
		http_reply_error(hs, req, 503, NULL, NULL, "draining", EP,
		                 "the daemon shut down before the images were finished");
}

/* ---- the request ------------------------------------------------------------------------- */

struct img_parsed {
	struct image_gen_params p;
	const char *model;
	unsigned char *init;
	int status;
	const char *param;
	char msg[256];
};

static int bad(struct img_parsed *q, const char *param, const char *fmt, const char *what)
{
	q->status = 400;
	q->param = param;
	snprintf(q->msg, sizeof q->msg, fmt, what);
	return -EINVAL;
}

/* An optional integer field in [lo, hi] into *out. */
static int get_int(struct img_parsed *q, json_t *root, const char *key, long long lo,
                   long long hi, long long *out)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		q->status = 400;
		q->param = key;
		snprintf(q->msg, sizeof q->msg, "'%s' must be an integer in %lld..%lld", key, lo, hi);
		return -EINVAL;
	}
	*out = json_integer_value(v);
	return 1;
}

static int get_num(struct img_parsed *q, json_t *root, const char *key, double lo, double hi,
                   float *out)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
		q->status = 400;
		q->param = key;
		snprintf(q->msg, sizeof q->msg, "'%s' must be a number in %g..%g", key, lo, hi);
		return -EINVAL;
	}
	*out = (float)json_number_value(v);
	return 1;
}

static int get_str(struct img_parsed *q, json_t *root, const char *key, const char **out)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return bad(q, key, "'%s' must be a string", key);
	*out = json_string_value(v);
	return 1;
}

static int parse(struct img_parsed *q, json_t *root, uint64_t salt)
{
	const char *fmt = NULL, *size = NULL, *init = NULL;
	long long v;
	int rc;

	if (!json_is_object(root))
		return bad(q, NULL, "%s", "the body must be a JSON object");
	if ((rc = get_str(q, root, "prompt", &q->p.p.prompt)) < 0)
		return rc;
	if (!q->p.p.prompt)
		return bad(q, "prompt", "%s", "'prompt' is required");
	if (get_str(q, root, "model", &q->model) < 0 ||
	    get_str(q, root, "negative_prompt", &q->p.p.negative_prompt) < 0 ||
	    get_str(q, root, "scheduler", &q->p.p.scheduler) < 0 ||
	    get_str(q, root, "response_format", &fmt) < 0 || get_str(q, root, "size", &size) < 0 ||
	    get_str(q, root, "init_image", &init) < 0)
		return -EINVAL;
	if (fmt && strcmp(fmt, "b64_json") != 0)
		return bad(q, "response_format", "response_format '%s' is not served: use b64_json",
		           fmt);
	if (size && strcmp(size, "auto") != 0) {
		int w = 0, h = 0;
		char end = 0;
		if (sscanf(size, "%dx%d%c", &w, &h, &end) != 2 || w < 1 || h < 1)
			return bad(q, "size", "'size' must be WIDTHxHEIGHT, e.g. 512x512 (got '%s')", size);
		q->p.p.width = w;
		q->p.p.height = h;
	}
	if ((rc = get_int(q, root, "n", 1, SD_MAX_IMAGES, &v)) < 0)
		return rc;
	if (rc)
		q->p.p.num_images = (int)v;
	if ((rc = get_int(q, root, "steps", 1, SD_MAX_STEPS, &v)) < 0 ||
	    (!rc && (rc = get_int(q, root, "num_inference_steps", 1, SD_MAX_STEPS, &v)) < 0))
		return rc;
	if (rc)
		q->p.p.steps = (int)v;
	if ((rc = get_int(q, root, "seed", 0, INT64_MAX, &v)) < 0)
		return rc;
	q->p.p.seed = rc ? (uint64_t)v : (uint64_t)(server_now() * 1e9) ^ salt;
	if (get_num(q, root, "guidance_scale", 0, 100, &q->p.p.guidance) < 0 ||
	    get_num(q, root, "strength", 0, 1, &q->p.p.strength) < 0)
		return -EINVAL;
	if (init) {
		size_t n = 0;
		if (b64_decode(init, strlen(init), &q->init, &n) < 0)
			return bad(q, "init_image", "%s", "'init_image' is not base64");
		q->p.init_image = q->init;
		q->p.init_len = n;
	}
	snprintf(q->p.png_text, sizeof q->p.png_text, "%s; seed %llu", q->p.p.prompt,
	         (unsigned long long)q->p.p.seed);
	return 0;
}

void http_images(struct http_server *hs, struct http_conn *conn, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *body = (const char *)evbuffer_pullup(in, -1);
	struct img_parsed q;
	struct http_img *g = NULL;
	json_error_t jerr;
	char msg[512];

	memset(&q, 0, sizeof q);
	json_t *root = body ? json_loadb(body, len, 0, &jerr) : NULL;
	if (!root) {
		http_reply_error(hs, req, 400, NULL, NULL, "invalid_json", EP,
		                 "the body is not valid JSON: %s", body ? jerr.text : "empty body");
		return;
	}
	if (parse(&q, root, hs->next_id++) < 0) {
		http_reply_error(hs, req, q.status, NULL, q.param, NULL, EP, "%s", q.msg);
		goto out;
	}
	if (!(g = calloc(1, sizeof(*g))) || !(g->data = json_array())) {
		http_reply_error(hs, req, 500, NULL, NULL, NULL, EP, "out of memory");
		goto out;
	}
	g->hs = hs;
	g->conn = conn;
	g->req = req;
	g->created = (json_int_t)time(NULL);
	int st = image_gen_start(hs->srv, q.model, &q.p, &http_sink, g, &g->gen, msg, sizeof msg);
	if (st != STATUS(OK)) {
		int hst = http_status_of(st);
		http_reply_error(hs, req, hst, NULL, hst == 404 ? "model" : NULL,
		                 hst == 404 ? "model_not_found" : hst == 429 ? "queue_full" : NULL, EP,
		                 "%s", msg);
		goto out;
	}
	/* Denoising takes longer than the idle timeout: the client is waiting, not idle. */
	struct timeval day = { .tv_sec = 86400, .tv_usec = 0 };
	evhttp_connection_set_timeout_tv(conn->evcon, &day);
	conn->img = g;
	g->next = hs->imgs;
	if (hs->imgs)
		hs->imgs->prev = g;
	hs->imgs = g;
	hs->n_imgs++;
	g = NULL;
out:
	if (g) {
		json_decref(g->data);
		free(g);
	}
	free(q.init);
	json_decref(root);
}
