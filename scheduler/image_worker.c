/* The image worker thread: inbox -> admission -> one stream-batched UNet step -> VAE decode and
 * PNG encoding of finished requests -> outbox. */
#include "image_worker.h"

#include <errno.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image_io.h"

/* One request inside the worker. */
struct req {
	uint64_t id;
	struct image_gen_params p;        /* strings and init bytes owned (copied at submit) */
	char *prompt, *negative, *scheduler;
	void *init;
	struct sd_job *job;               /* once admitted */
	double t_submit, t_start;
	bool cancelled;
	struct req *next;
};

struct image_worker {
	struct image_worker_params p;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;             /* guards what follows */
	pthread_cond_t wake;
	bool stop;
	struct req *inbox_head, *inbox_tail;
	unsigned n_inbox;
	uint64_t *cancels;
	size_t n_cancels, cap_cancels;
	struct image_event *outbox;
	size_t n_out, cap_out;
	struct image_worker_stats stats;
	/* worker thread only */
	struct req *waiting;              /* taken from the inbox, not admitted yet (FIFO) */
	struct req *running;              /* admitted, in admission order */
	struct image_event *staged;
	size_t n_staged, cap_staged;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void req_free(struct req *r)
{
	if (!r)
		return;
	sd_job_free(r->job);
	free(r->prompt);
	free(r->negative);
	free(r->scheduler);
	free(r->init);
	free(r);
}

/* ---- events (worker thread: staged, then published under the lock) --------------------- */

static struct image_event *stage(struct image_worker *w, uint64_t id, enum image_event_kind k)
{
	if (w->n_staged == w->cap_staged) {
		size_t cap = w->cap_staged ? 2 * w->cap_staged : 16;
		struct image_event *n = realloc(w->staged, cap * sizeof(*n));
		if (!n)
			return NULL;
		w->staged = n;
		w->cap_staged = cap;
	}
	struct image_event *e = &w->staged[w->n_staged++];
	memset(e, 0, sizeof(*e));
	e->id = id;
	e->kind = k;
	return e;
}

static void stage_end(struct image_worker *w, struct req *r, int error, const char *msg)
{
	struct image_event *e = stage(w, r->id, IMAGE_EVENT_END);
	double t = now_s();
	/* Out of memory for the event itself: the request's consumer hears nothing more; the
	 * serving layer's deadline ends the call. */
	if (!e)
		return;
	e->error = error;
	snprintf(e->message, sizeof e->message, "%s", msg ? msg : "");
	e->queue_s = (r->t_start > 0 ? r->t_start : t) - r->t_submit;
	e->total_s = t - r->t_submit;
	if (r->job) {
		e->step = sd_job_steps_done(r->job);
		e->total = sd_job_total_steps(r->job);
	}
}

/* Publishes the staged events; false when nothing was published. */
static bool publish(struct image_worker *w)
{
	bool any = false;
	pthread_mutex_lock(&w->lock);
	if (w->n_staged) {
		size_t need = w->n_out + w->n_staged;
		if (need > w->cap_out) {
			size_t cap = w->cap_out ? w->cap_out : 16;
			while (cap < need)
				cap *= 2;
			struct image_event *n = realloc(w->outbox, cap * sizeof(*n));
			if (n) {
				w->outbox = n;
				w->cap_out = cap;
			}
		}
		if (need <= w->cap_out) {
			memcpy(w->outbox + w->n_out, w->staged, w->n_staged * sizeof(*w->staged));
			w->n_out = need;
			any = true;
		} else {
			for (size_t i = 0; i < w->n_staged; i++)
				free(w->staged[i].png);
		}
		w->n_staged = 0;
	}
	pthread_mutex_unlock(&w->lock);
	if (any && w->p.notify)
		w->p.notify(w->p.notify_arg);
	return any;
}

/* ---- admission and steps ----------------------------------------------------------------- */

static void count(struct image_worker *w, uint64_t *field, uint64_t by)
{
	pthread_mutex_lock(&w->lock);
	*field += by;
	pthread_mutex_unlock(&w->lock);
}

/* Builds a request's job: init image decoding, text encoding, initial latents. */
static int make_job(struct image_worker *w, struct req *r, char *msg, size_t msglen)
{
	struct image_rgb8 init = { 0 };
	struct sd_params sp = r->p.p;
	char why[200];
	int rc;

	if (r->init) {
		if ((rc = image_decode(r->init, r->p.init_len, &init, why, sizeof why)) < 0) {
			snprintf(msg, msglen, "init_image: %s", why);
			return -EINVAL;
		}
		sp.init = &init;
	}
	double t0 = now_s();
	rc = sd_job_new(w->p.model, &sp, w->p.n_threads, &r->job, msg, msglen);
	double dt = now_s() - t0;
	pthread_mutex_lock(&w->lock);
	w->stats.text_s += dt;
	pthread_mutex_unlock(&w->lock);
	image_rgb8_free(&init);
	return rc;
}

static unsigned items_of(const struct req *list)
{
	unsigned n = 0;
	for (; list; list = list->next)
		n += (unsigned)sd_job_unet_items(list->job);
	return n;
}

static void append(struct req **list, struct req *r)
{
	r->next = NULL;
	while (*list)
		list = &(*list)->next;
	*list = r;
}

/* Admits waiting requests in arrival order while the batch has room. */
static void admit(struct image_worker *w)
{
	char msg[256];
	while (w->waiting) {
		struct req *r = w->waiting;
		if (w->running && items_of(w->running) >= w->p.max_batch)
			break;
		w->waiting = r->next;
		int rc = make_job(w, r, msg, sizeof msg);
		if (rc < 0) {
			stage_end(w, r, rc, msg);
			count(w, &w->stats.failed, 1);
			req_free(r);
			continue;
		}
		r->t_start = now_s();
		append(&w->running, r);
	}
}

/* Decodes and encodes a finished request's images, then its END. */
static void finish(struct image_worker *w, struct req *r)
{
	const float *imgs;
	char msg[256];
	double t0 = now_s();
	int rc = sd_job_decode(r->job, w->p.n_threads, &imgs);
	double t1 = now_s();
	int width = sd_job_width(r->job), height = sd_job_height(r->job);
	size_t per = 3 * (size_t)width * (size_t)height;
	const char *text[3] = { "parameters", r->p.png_text, NULL };
	int n_ok = 0;

	if (rc < 0) {
		snprintf(msg, sizeof msg, "VAE decode: %s", strerror(-rc));
		stage_end(w, r, rc, msg);
		count(w, &w->stats.failed, 1);
		return;
	}
	for (int k = 0; k < sd_job_num_images(r->job); k++) {
		struct image_rgb8 px = { 0 };
		void *png = NULL;
		size_t len = 0;
		rc = image_from_chw(imgs + (size_t)k * per, width, height, &px);
		if (rc == 0)
			rc = image_encode_png(&px, r->p.png_text[0] ? text : NULL, &png, &len, msg,
			                      sizeof msg);
		else
			snprintf(msg, sizeof msg, "%s", strerror(-rc));
		image_rgb8_free(&px);
		if (rc < 0)
			break;
		struct image_event *e = stage(w, r->id, IMAGE_EVENT_IMAGE);
		if (!e) {
			free(png);
			rc = -ENOMEM;
			snprintf(msg, sizeof msg, "out of memory");
			break;
		}
		e->png = png;
		e->png_len = len;
		e->index = k;
		e->width = width;
		e->height = height;
		e->seed = sd_job_seed(r->job, k);
		n_ok++;
	}
	double t2 = now_s();
	pthread_mutex_lock(&w->lock);
	w->stats.decode_s += t1 - t0;
	w->stats.encode_s += t2 - t1;
	w->stats.images += (uint64_t)n_ok;
	if (rc < 0)
		w->stats.failed++;
	else
		w->stats.finished++;
	pthread_mutex_unlock(&w->lock);
	stage_end(w, r, rc < 0 ? rc : 0, rc < 0 ? msg : NULL);
}

/* One denoising step of every running request, in one UNet call. */
static void step(struct image_worker *w)
{
	struct sd_job **jobs;
	struct req **who;
	int n = 0;
	char msg[256];

	for (struct req *r = w->running; r; r = r->next)
		n++;
	if (!n)
		return;
	jobs = malloc((size_t)n * sizeof(*jobs));
	who = malloc((size_t)n * sizeof(*who));
	if (!jobs || !who) {
		/* Out of memory for two small arrays: try again next iteration. */
		free(jobs);
		free(who);
		return;
	}
	n = 0;
	for (struct req *r = w->running; r; r = r->next) {
		jobs[n] = r->job;
		who[n++] = r;
	}
	double t0 = now_s();
	int rc = sd_step_jobs(w->p.model, jobs, n, w->p.n_threads);
	double dt = now_s() - t0;
	int items = 0;
	for (int i = 0; i < n; i++)
		items += sd_job_unet_items(jobs[i]);
	pthread_mutex_lock(&w->lock);
	w->stats.unet_calls++;
	w->stats.unet_items += (uint64_t)items;
	w->stats.unet_s += dt;
	pthread_mutex_unlock(&w->lock);

	for (int i = 0; i < n; i++) {
		struct req *r = who[i];
		bool done = rc < 0 || sd_job_denoised(r->job);
		if (rc < 0) {
			snprintf(msg, sizeof msg, "denoising step: %s", strerror(-rc));
			stage_end(w, r, rc, msg);
			count(w, &w->stats.failed, 1);
		} else {
			if (r->p.progress) {
				struct image_event *e = stage(w, r->id, IMAGE_EVENT_PROGRESS);
				if (e) {
					e->step = sd_job_steps_done(r->job);
					e->total = sd_job_total_steps(r->job);
				}
			}
			if (done)
				finish(w, r);
		}
		if (done) {
			struct req **pp = &w->running;
			while (*pp != r)
				pp = &(*pp)->next;
			*pp = r->next;
			req_free(r);
		}
	}
	free(jobs);
	free(who);
}

/* Applies the cancels: the requests end with -ECANCELED. */
static void apply_cancels(struct image_worker *w, const uint64_t *ids, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct req **lists[2] = { &w->waiting, &w->running };
		for (int l = 0; l < 2; l++) {
			for (struct req **pp = lists[l]; *pp; pp = &(*pp)->next) {
				if ((*pp)->id != ids[i])
					continue;
				struct req *r = *pp;
				*pp = r->next;
				stage_end(w, r, -ECANCELED, "cancelled");
				count(w, &w->stats.cancelled, 1);
				req_free(r);
				break;
			}
		}
	}
}

static void *run(void *arg)
{
	struct image_worker *w = arg;

	if (w->p.n_threads > 0)
		omp_set_num_threads(w->p.n_threads);
	for (;;) {
		uint64_t *cancels = NULL;
		size_t n_cancels = 0;
		pthread_mutex_lock(&w->lock);
		while (!w->stop && !w->inbox_head && !w->n_cancels && !w->waiting && !w->running)
			pthread_cond_wait(&w->wake, &w->lock);
		if (w->stop) {
			pthread_mutex_unlock(&w->lock);
			break;
		}
		while (w->inbox_head) {
			struct req *r = w->inbox_head;
			w->inbox_head = r->next;
			append(&w->waiting, r);
		}
		w->inbox_tail = NULL;
		w->n_inbox = 0;
		if (w->n_cancels) {
			cancels = w->cancels;
			n_cancels = w->n_cancels;
			w->cancels = NULL;
			w->n_cancels = w->cap_cancels = 0;
		}
		pthread_mutex_unlock(&w->lock);

		apply_cancels(w, cancels, n_cancels);
		free(cancels);
		admit(w);
		step(w);
		unsigned queued = 0, running = 0;
		for (struct req *r = w->waiting; r; r = r->next)
			queued++;
		for (struct req *r = w->running; r; r = r->next)
			running++;
		pthread_mutex_lock(&w->lock);
		w->stats.queued = queued + w->n_inbox;
		w->stats.running = running;
		pthread_mutex_unlock(&w->lock);
		publish(w);
	}
	return NULL;
}

/* ---- the loop thread's side -------------------------------------------------------------- */

int image_worker_new(const struct image_worker_params *p, struct image_worker **out, char *err,
                     size_t errlen)
{
	struct image_worker *w;

	*out = NULL;
	if (!p->model || p->max_batch < 1) {
		snprintf(err, errlen, "image worker: no model or max_batch 0");
		return -EINVAL;
	}
	if (!(w = calloc(1, sizeof(*w)))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	w->p = *p;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	int rc = pthread_create(&w->thread, NULL, run, w);
	if (rc != 0) {
		snprintf(err, errlen, "image worker thread: %s", strerror(rc));
		image_worker_free(w);
		return -rc;
	}
	w->thread_started = true;
	*out = w;
	return 0;
}

static void free_list(struct req *r)
{
	while (r) {
		struct req *next = r->next;
		req_free(r);
		r = next;
	}
}

void image_worker_free(struct image_worker *w)
{
	if (!w)
		return;
	if (w->thread_started) {
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_cond_signal(&w->wake);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	free_list(w->inbox_head);
	free_list(w->waiting);
	free_list(w->running);
	for (size_t i = 0; i < w->n_out; i++)
		free(w->outbox[i].png);
	for (size_t i = 0; i < w->n_staged; i++)
		free(w->staged[i].png);
	free(w->outbox);
	free(w->staged);
	free(w->cancels);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

static char *dup_or_null(const char *s, bool *fail)
{
	char *d;
	if (!s)
		return NULL;
	if (!(d = strdup(s)))
		*fail = true;
	return d;
}

int image_worker_submit(struct image_worker *w, uint64_t id, const struct image_gen_params *p)
{
	struct req *r = calloc(1, sizeof(*r));
	bool fail = false;

	if (!r)
		return -ENOMEM;
	r->id = id;
	r->p = *p;
	r->prompt = dup_or_null(p->p.prompt ? p->p.prompt : "", &fail);
	r->negative = dup_or_null(p->p.negative_prompt, &fail);
	r->scheduler = dup_or_null(p->p.scheduler, &fail);
	if (p->init_image && p->init_len) {
		if ((r->init = malloc(p->init_len)))
			memcpy(r->init, p->init_image, p->init_len);
		else
			fail = true;
	}
	if (fail) {
		req_free(r);
		return -ENOMEM;
	}
	r->p.p.prompt = r->prompt;
	r->p.p.negative_prompt = r->negative;
	r->p.p.scheduler = r->scheduler;
	r->p.p.init = NULL;
	r->p.init_image = r->init;
	r->t_submit = now_s();

	pthread_mutex_lock(&w->lock);
	if (w->stats.queued + w->n_inbox >= w->p.max_queued) {
		pthread_mutex_unlock(&w->lock);
		req_free(r);
		return -EAGAIN;
	}
	if (w->inbox_tail)
		w->inbox_tail->next = r;
	else
		w->inbox_head = r;
	w->inbox_tail = r;
	w->n_inbox++;
	w->stats.submitted++;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

void image_worker_cancel(struct image_worker *w, uint64_t id)
{
	pthread_mutex_lock(&w->lock);
	if (w->n_cancels == w->cap_cancels) {
		size_t cap = w->cap_cancels ? 2 * w->cap_cancels : 8;
		uint64_t *n = realloc(w->cancels, cap * sizeof(*n));
		if (!n) {
			/* The request runs to its end; its events find no consumer and are dropped. */
			pthread_mutex_unlock(&w->lock);
			return;
		}
		w->cancels = n;
		w->cap_cancels = cap;
	}
	w->cancels[w->n_cancels++] = id;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
}

size_t image_worker_take_events(struct image_worker *w, struct image_event **events)
{
	size_t n;
	pthread_mutex_lock(&w->lock);
	*events = w->outbox;
	n = w->n_out;
	w->outbox = NULL;
	w->n_out = w->cap_out = 0;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void image_worker_stats(struct image_worker *w, struct image_worker_stats *out)
{
	pthread_mutex_lock(&w->lock);
	*out = w->stats;
	pthread_mutex_unlock(&w->lock);
}
