/* Loading the configured image models, their workers, and the generations in flight. */
#include "images.h"

#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "generation.h"
#include "inferd.pb-c.h"
#include "log.h"
#include "server-internal.h"

#define STATUS(x) INFERD__V1__STATUS_CODE__STATUS_##x

struct image_gen {
	struct served_image *model;
	uint64_t id;
	const struct image_sink *sink;
	void *arg;
	struct image_gen *next;
};

bool model_path_is_image(const char *path)
{
	struct stat st;
	return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void unlink_gen(struct image_gen *g)
{
	struct image_gen **pp = &g->model->gens;
	while (*pp && *pp != g)
		pp = &(*pp)->next;
	if (*pp)
		*pp = g->next;
}

int image_status_of(int error)
{
	switch (error) {
	case 0: return STATUS(OK);
	case -EINVAL: return STATUS(INVALID_ARGUMENT);
	case -ECANCELED: return STATUS(CANCELLED);
	case -EAGAIN:
	case -ENOMEM: return STATUS(RESOURCE_EXHAUSTED);
	default: return STATUS(INTERNAL);
	}
}

static struct image_gen *find(struct served_image *m, uint64_t id)
{
	for (struct image_gen *g = m->gens; g; g = g->next)
		if (g->id == id)
			return g;
	return NULL; /* abandoned */
}

static void collect(evutil_socket_t fd, short what, void *arg)
{
	struct served_image *m = arg;
	struct image_event *ev = NULL;
	size_t n = image_worker_take_events(m->worker, &ev);

	(void)fd;
	(void)what;
	for (size_t i = 0; i < n; i++) {
		struct image_gen *g = find(m, ev[i].id);
		if (g) {
			switch (ev[i].kind) {
			case IMAGE_EVENT_PROGRESS:
				if (g->sink->progress)
					g->sink->progress(ev[i].step, ev[i].total, g->arg);
				break;
			case IMAGE_EVENT_IMAGE:
				g->sink->image(&ev[i], g->arg);
				break;
			case IMAGE_EVENT_END:
				unlink_gen(g);
				g->sink->end(&ev[i], image_status_of(ev[i].error), g->arg);
				free(g);
				break;
			}
		}
		free(ev[i].png);
	}
	free(ev);
}

/* Runs on the worker thread: wake the loop (libevent is set up for threads). */
static void notify_loop(void *arg)
{
	struct served_image *m = arg;
	event_active(m->events_ev, EV_READ, 0);
}

static int open_one(struct inferd_server *srv, struct served_image *m,
                    const struct model_config *mc, char *err, size_t errlen)
{
	char why[768];
	int rc;

	m->cfg = mc;
	m->srv = srv;
	m->next_id = 1;
	int n_threads = mc->threads ? (int)mc->threads : omp_get_max_threads();
	struct sd_open_params op = { .with_encoder = !mc->no_img2img, .n_threads = n_threads };
	if ((rc = sd_model_open(mc->path, &op, &m->sd, why, sizeof why)) < 0) {
		snprintf(err, errlen, "model %s: %s", mc->name, why);
		return rc;
	}
	sd_model_get_info(m->sd, &m->info);
	if (!(m->events_ev = event_new(srv->base, -1, 0, collect, m))) {
		snprintf(err, errlen, "model %s: out of memory", mc->name);
		return -ENOMEM;
	}
	struct image_worker_params wp = {
		.model = m->sd,
		.n_threads = n_threads,
		.max_batch = mc->max_batch ? mc->max_batch : 8,
		.max_queued = mc->max_queued,
		.notify = notify_loop,
		.notify_arg = m,
	};
	if ((rc = image_worker_new(&wp, &m->worker, why, sizeof why)) < 0) {
		snprintf(err, errlen, "model %s: %s", mc->name, why);
		return rc;
	}
	log_info("model %s: %s, diffusion (%s), %.1fM parameters (%s), default %dx%d, %d steps of "
	         "%s, guidance %.1f, stream batch of %u UNet items, img2img %s", mc->name, mc->path,
	         m->info.arch, (double)m->info.n_params / 1e6, m->info.dtype, m->info.default_width,
	         m->info.default_height, m->info.default_steps,
	         nsched_kind_name(m->info.default_scheduler), (double)m->info.default_guidance,
	         wp.max_batch, m->info.has_encoder ? "on" : "off");
	return 0;
}

int images_open(struct inferd_server *srv, struct served_image **out, size_t *n_out, char *err,
                size_t errlen)
{
	const struct inferd_config *cfg = srv->cfg;
	struct served_image *ms;
	size_t n = 0;

	*out = NULL;
	*n_out = 0;
	if (!cfg->n_models)
		return 0;
	if (!(ms = calloc(cfg->n_models, sizeof(*ms)))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_models; i++) {
		if (!model_path_is_image(cfg->models[i].path))
			continue;
		int rc = open_one(srv, &ms[n], &cfg->models[i], err, errlen);
		n++;
		if (rc < 0) {
			images_close(ms, n);
			return rc;
		}
	}
	*out = ms;
	*n_out = n;
	return 0;
}

void images_close(struct served_image *models, size_t n)
{
	for (size_t i = 0; models && i < n; i++) {
		struct served_image *m = &models[i];
		image_worker_free(m->worker); /* first: the thread may still notify */
		if (m->events_ev)
			event_free(m->events_ev);
		while (m->gens) {
			struct image_gen *g = m->gens;
			m->gens = g->next;
			free(g);
		}
		sd_model_free(m->sd);
	}
	free(models);
}

struct served_image *images_find(struct inferd_server *srv, const char *name)
{
	if ((!name || !*name) && srv->n_images == 1)
		return &srv->images[0];
	for (size_t i = 0; name && i < srv->n_images; i++)
		if (strcmp(srv->images[i].cfg->name, name) == 0)
			return &srv->images[i];
	return NULL;
}

int image_gen_start(struct inferd_server *srv, const char *model,
                    const struct image_gen_params *p, const struct image_sink *sink, void *arg,
                    struct image_gen **out, char *msg, size_t msglen)
{
	struct served_image *m = images_find(srv, model);
	struct image_gen *g;
	char why[256];
	int rc;

	*out = NULL;
	if (!m) {
		if (model && *model && generation_find_model(srv, model))
			snprintf(msg, msglen, "model '%s' is a language model, not an image model", model);
		else if (srv->n_images == 0)
			snprintf(msg, msglen, "this daemon serves no image model");
		else if (model && *model)
			snprintf(msg, msglen, "no image model named '%s'", model);
		else
			snprintf(msg, msglen, "name an image model (this daemon serves %zu)",
			         srv->n_images);
		return STATUS(NOT_FOUND);
	}
	/* Everything but the init image's decoding is checked here, before queueing. */
	struct sd_params sp = p->p;
	sp.init = NULL;
	if (sd_params_check(m->sd, &sp, p->init_image && p->init_len, why, sizeof why) < 0) {
		snprintf(msg, msglen, "%s", why);
		return STATUS(INVALID_ARGUMENT);
	}
	if (!(g = calloc(1, sizeof(*g)))) {
		snprintf(msg, msglen, "out of memory");
		return STATUS(RESOURCE_EXHAUSTED);
	}
	g->model = m;
	g->id = m->next_id++;
	g->sink = sink;
	g->arg = arg;
	if ((rc = image_worker_submit(m->worker, g->id, p)) < 0) {
		free(g);
		snprintf(msg, msglen, rc == -EAGAIN ? "too many image requests queued (max_queued %u)"
		                                    : "out of memory", m->cfg->max_queued);
		return STATUS(RESOURCE_EXHAUSTED);
	}
	g->next = m->gens;
	m->gens = g;
	*out = g;
	return STATUS(OK);
}

void image_gen_abandon(struct image_gen *g)
{
	if (!g)
		return;
	image_worker_cancel(g->model->worker, g->id);
	unlink_gen(g);
	free(g);
}
