/* Nano-batching parameter search and its profile file. */
#include "nano_tune.h"

#include <errno.h>
#include <ini.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "kv_cache.h"
#include "llama.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct bench {
	struct llama_model *m;
	struct kv_cache *kv;
	struct fwd_seq *seqs;      /* (batch) decode step */
	int32_t *tables;           /* (batch, blocks_per_seq) */
	int32_t *tokens;           /* (batch) */
	float *logits;             /* (batch, n_vocab) */
	int batch;
};

/* Median seconds of reps decode iterations (nano NULL: unsplit). */
static int time_decode(struct bench *b, const struct fwd_nano *nano, int reps, double *out)
{
	double t[16];
	if (reps > 16)
		reps = 16;
	for (int r = 0; r < reps; r++) {
		double t0 = now_s();
		int rc = nano ? llama_forward_nano(b->m, b->kv, b->seqs, b->batch, b->logits, nano)
		              : llama_forward(b->m, b->kv, b->seqs, b->batch, b->logits);
		if (rc < 0)
			return rc;
		t[r] = now_s() - t0;
	}
	qsort(t, (size_t)reps, sizeof(t[0]), cmp_double);
	*out = t[reps / 2];
	return 0;
}

int nano_tune(struct llama_model *m, struct backend *be, int batch, int context,
              int block_size, enum dtype kv_type, int n_threads, struct nano_profile *out,
              FILE *report,
              char *err, size_t errlen)
{
	const struct llama_hparams *hp = llama_model_hparams(m);
	struct kv_cache_params kvp;
	struct bench b = { .m = m, .batch = batch };
	int bps = (context + 1 + block_size - 1) / block_size;
	int rc = -ENOMEM;

	memset(out, 0, sizeof(*out));
	out->batch = batch;
	out->context = context;
	if (batch < 2 || context < 1 || context + 1 > hp->n_ctx_train) {
		snprintf(err, errlen, "tuning needs a batch of 2 or more and a context below %d",
		         hp->n_ctx_train);
		return -EINVAL;
	}
	llama_kv_params(m, block_size, batch * bps, &kvp);
	kvp.type = kv_type;
	if ((rc = kv_cache_new(be, &kvp, &b.kv)) < 0) {
		snprintf(err, errlen, "no memory for a KV cache of %d x %d positions", batch, context);
		return rc;
	}
	rc = -ENOMEM;
	b.seqs = calloc((size_t)batch, sizeof(*b.seqs));
	b.tables = calloc((size_t)batch * bps, sizeof(*b.tables));
	b.tokens = calloc((size_t)(context > batch ? context : batch), sizeof(*b.tokens));
	b.logits = malloc((size_t)batch * hp->n_vocab * sizeof(float));
	if (!b.seqs || !b.tables || !b.tokens || !b.logits) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* Fill every sequence's context through the model (one prefill each, in chunks). */
	for (int i = 0; i < context; i++)
		b.tokens[i] = 1 + (i * 37) % (hp->n_vocab - 1);
	for (int s = 0; s < batch; s++) {
		for (int k = 0; k < bps; k++)
			b.tables[s * bps + k] = s * bps + k;
		for (int pos = 0; pos < context; pos += 256) {
			int n = context - pos < 256 ? context - pos : 256;
			struct fwd_seq f = { .tokens = b.tokens + pos, .n_tokens = n, .pos = pos,
			                     .block_table = b.tables + s * bps, .n_blocks = bps,
			                     .logits = FWD_LOGITS_NONE };
			if ((rc = llama_forward(m, b.kv, &f, 1, NULL)) < 0) {
				snprintf(err, errlen, "prefill for tuning failed: %s (max_batched_tokens "
				         "below 256?)", strerror(-rc));
				goto out;
			}
		}
	}
	for (int s = 0; s < batch; s++)
		b.seqs[s] = (struct fwd_seq){ .tokens = b.tokens + s % context, .n_tokens = 1,
		                              .pos = context, .block_table = b.tables + s * bps,
		                              .n_blocks = bps, .logits = FWD_LOGITS_LAST };

	double t_off, best = 0;
	if ((rc = time_decode(&b, NULL, 3, &t_off)) < 0 || (rc = time_decode(&b, NULL, 7, &t_off)) < 0)
		goto fail_run;
	if (report)
		fprintf(report, "tune: batch %d x context %d: unsplit %.2f ms per iteration\n", batch,
		        context, t_off * 1e3);
	static const double splits[] = { 0.25, 0.375, 0.5, 0.625, 0.75 };
	/* Thread splits: even, and (with 3 cores or more) lopsided both ways. */
	int tsplits[3][2] = { { n_threads > 1 ? n_threads / 2 : 1,
	                        n_threads > 1 ? n_threads - n_threads / 2 : 1 },
	                      { 1, n_threads - 1 }, { n_threads - 1, 1 } };
	int n_tsplits = n_threads >= 3 ? 3 : 1;
	for (int ts = 0; ts < n_tsplits; ts++) {
		for (size_t i = 0; i < sizeof(splits) / sizeof(splits[0]); i++) {
			struct fwd_nano np = { .split = splits[i], .min_tokens = 2,
			                       .threads = { tsplits[ts][0], tsplits[ts][1] } };
			double t;
			if ((rc = time_decode(&b, &np, 7, &t)) < 0)
				goto fail_run;
			if (report)
				fprintf(report, "tune: split %.3f, threads %d+%d: %.2f ms (%.3fx unsplit)\n",
				        np.split, np.threads[0], np.threads[1], t * 1e3, t_off / t);
			if (best == 0 || t < best) {
				best = t;
				out->params = np;
			}
		}
	}
	out->t_off = t_off;
	out->t_on = best;
	out->enabled = best < 0.98 * t_off;
	/* Smaller batches than a quarter of the tuned one keep running unsplit. */
	out->params.min_tokens = batch / 4 > 2 ? batch / 4 : 2;
	if (report)
		fprintf(report, "tune: nano-batching %s (best %.3fx of unsplit)\n",
		        out->enabled ? "on" : "off", t_off / best);
	rc = 0;
	goto out;
fail_run:
	snprintf(err, errlen, "timing the forward pass failed: %s", strerror(-rc));
out:
	kv_cache_free(b.kv);
	free(b.seqs);
	free(b.tables);
	free(b.tokens);
	free(b.logits);
	return rc;
}

/* ---- the profile file -------------------------------------------------------------------- */

int nano_profile_save(const char *path, const struct nano_profile *p, const char *model_path,
                      char *err, size_t errlen)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (!f) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(e));
		return -e;
	}
	fprintf(f, "# nano-batching profile of %s, written by inferd --tune\n"
	        "# measured: batch %d x context %d, unsplit %.3f ms, best split %.3f ms (%.3fx)\n"
	        "[nano]\nenabled = %s\nsplit = %.3f\nmin_tokens = %lld\nthreads0 = %d\n"
	        "threads1 = %d\n", model_path, p->batch, p->context, p->t_off * 1e3, p->t_on * 1e3,
	        p->t_on > 0 ? p->t_off / p->t_on : 0.0, p->enabled ? "true" : "false",
	        p->params.split, (long long)p->params.min_tokens, p->params.threads[0],
	        p->params.threads[1]);
	if (fclose(f) != 0 || rename(tmp, path) != 0) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		unlink(tmp);
		return -e;
	}
	return 0;
}

struct load_ctx {
	struct nano_profile *p;
	char why[128];
};

static int on_line(void *user, const char *section, const char *name, const char *value)
{
	struct load_ctx *c = user;
	char *end;
	if (strcmp(section, "nano") != 0) {
		snprintf(c->why, sizeof(c->why), "unknown section [%s]", section);
		return 0;
	}
	if (strcmp(name, "enabled") == 0) {
		c->p->enabled = strcasecmp(value, "true") == 0;
		return strcasecmp(value, "true") == 0 || strcasecmp(value, "false") == 0;
	}
	if (strcmp(name, "split") == 0) {
		c->p->params.split = strtod(value, &end);
		return *end == '\0' && c->p->params.split > 0 && c->p->params.split < 1;
	}
	long v = strtol(value, &end, 10);
	if (*end || v < 0 || v > 1 << 20)
		return 0;
	if (strcmp(name, "min_tokens") == 0)
		c->p->params.min_tokens = v;
	else if (strcmp(name, "threads0") == 0)
		c->p->params.threads[0] = (int)v;
	else if (strcmp(name, "threads1") == 0)
		c->p->params.threads[1] = (int)v;
	else {
		snprintf(c->why, sizeof(c->why), "unknown key '%s'", name);
		return 0;
	}
	return 1;
}

int nano_profile_load(const char *path, struct nano_profile *p, char *err, size_t errlen)
{
	struct load_ctx c = { .p = p };
	FILE *f = fopen(path, "r");
	memset(p, 0, sizeof(*p));
	if (!f)
		return -errno;
	int line = ini_parse_file(f, on_line, &c);
	fclose(f);
	if (line) {
		snprintf(err, errlen, "%s:%d: %s", path, line, c.why[0] ? c.why : "bad value");
		return -EINVAL;
	}
	return 0;
}
