/* UNet forward speed against its own convolutions and matrix products run alone (the same
 * shapes through conv2d_run / cpu_matmul, traced from the model with unet_forward_traced),
 * interleaved repetitions, medians: how close the model is to its kernels. Random f32
 * weights written by the bench (diffusers names, st_writer) into a temporary folder.
 *
 *   bench_unet [--quick] [--sd15] [--only NAME]
 *     tiny:  diffusers' tiny test UNet ([32, 64], cross 32), 32x32 latents, B = 2
 *     mid:   [128, 256, 512], 2 layers per block, cross 768, 8 heads, 32x32 latents, B = 2
 *     sd15:  (with --sd15) SD 1.5's UNet ([320, 640, 1280, 1280]) at 64x64, B = 2; slow
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conv.h"
#include "diffusion_ops.h"
#include "matmul.h"
#include "pipeline.h"
#include "safetensors.h"
#include "unet.h"
#include "../bench_util.h"

static float frand(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return ((float)((*s >> 40) & 0xffffff) / 16777216.0f - 0.5f) * 2.0f;
}

/* ---- a random-weight model file -------------------------------------------------------- */

struct gen {
	struct st_writer *w;
	int64_t n[2048];
	int kind[2048];
	int64_t fan[2048];
	int count;
};

static int plan(const char *name, const char *alt, uint32_t nd, const int64_t *shape,
                enum diff_tensor_kind kind, void *arg)
{
	struct gen *g = arg;
	(void)alt;
	if (g->count == 2048)
		return -E2BIG;
	int64_t n = 1, fan = 1;
	for (uint32_t i = 0; i < nd; i++) {
		n *= shape[i];
		if (i > 0)
			fan *= shape[i];
	}
	g->n[g->count] = n;
	g->kind[g->count] = (int)kind;
	g->fan[g->count++] = fan;
	return st_writer_add_tensor(g->w, name, "F32", nd, shape);
}

static int fill(size_t idx, void *buf, size_t nbytes, void *arg)
{
	struct gen *g = arg;
	float *v = buf;
	uint64_t s = 0x1234567ull + idx * 7919u;
	const float sd = g->kind[idx] == DIFF_TENSOR_WEIGHT ? 1.7f / sqrtf((float)g->fan[idx]) : 0.02f;
	const float mean = g->kind[idx] == DIFF_TENSOR_NORM ? 1.0f : 0.0f;
	for (size_t i = 0; i < nbytes / 4; i++)
		v[i] = mean + sd * frand(&s);
	return 0;
}

static struct unet *make_model(const struct diff_unet_config *c, const char *dir,
                               struct st_file **f)
{
	char path[600], err[512] = "";
	struct gen *g = calloc(1, sizeof *g);
	struct unet *u = NULL;
	if (g == NULL || (g->w = st_writer_new()) == NULL)
		goto out;
	snprintf(path, sizeof path, "%s/unet.safetensors", dir);
	if (diff_unet_tensors(c, plan, g) != 0 ||
	    st_writer_write(g->w, path, fill, g, err, sizeof err) != 0 ||
	    st_open(path, f, err, sizeof err) != 0 || unet_new(c, *f, &u, err, sizeof err) != 0)
		fprintf(stderr, "bench_unet: %s\n", err[0] ? err : "cannot make the model");
	unlink(path);
out:
	if (g != NULL)
		st_writer_free(g->w);
	free(g);
	return u;
}

static void base_config(struct diff_unet_config *c, int n, const int *ch, int cross, int heads)
{
	memset(c, 0, sizeof *c);
	c->in_channels = c->out_channels = 4;
	c->n_blocks = n;
	for (int i = 0; i < n; i++) {
		c->block_out_channels[i] = ch[i];
		c->down_blocks[i] = i < n - 1 ? DIFF_BLOCK_CROSS_ATTN_DOWN : DIFF_BLOCK_DOWN;
		c->up_blocks[i] = i == 0 ? DIFF_BLOCK_UP : DIFF_BLOCK_CROSS_ATTN_UP;
		c->attention_heads[i] = heads;
		c->transformer_layers[i] = 1;
	}
	c->layers_per_block = 2;
	c->cross_attention_dim = cross;
	c->sample_size = 64;
	c->norm_num_groups = 32;
	c->norm_eps = 1e-5f;
	c->flip_sin_to_cos = true;
	c->downsample_padding = 1;
	c->mid_block_scale_factor = 1.0f;
	c->has_mid_block = true;
	c->time_embed_dim = 4 * ch[0];
}

/* ---- the kernels alone -------------------------------------------------------------------- */

struct kernel {
	struct unet_op op;
	struct conv2d *conv;       /* shared between ops of the same layer shape */
	bool own_conv;
};

struct trace {
	struct kernel *k;
	int n, cap;
	double conv_flop, mm_flop, attn_flop;
	size_t max_in, max_out;    /* floats */
};

static bool same_conv(const struct unet_op *a, const struct unet_op *b)
{
	return a->in_ch == b->in_ch && a->out_ch == b->out_ch && a->kh == b->kh &&
	       a->kw == b->kw && a->stride == b->stride && a->pad_t == b->pad_t &&
	       a->pad_l == b->pad_l && a->pad_b == b->pad_b && a->pad_r == b->pad_r;
}

static void record(const struct unet_op *op, void *arg)
{
	struct trace *t = arg;
	if (t->n == t->cap) {
		int cap = t->cap ? 2 * t->cap : 256;
		struct kernel *k = realloc(t->k, (size_t)cap * sizeof *k);
		if (k == NULL)
			return;
		t->k = k;
		t->cap = cap;
	}
	struct kernel *k = &t->k[t->n++];
	memset(k, 0, sizeof *k);
	k->op = *op;
	size_t in, out;
	if (op->kind == UNET_OP_CONV) {
		const int64_t oh = op->h / op->stride, ow = op->w / op->stride;
		in = (size_t)(op->n * op->in_ch * op->h * op->w);
		out = (size_t)(op->n * op->out_ch * oh * ow);
		t->conv_flop += 2.0 * op->n * op->out_ch * op->in_ch * op->kh * op->kw * oh * ow;
	} else if (op->kind == UNET_OP_MATMUL) {
		in = (size_t)(op->tokens * op->cols);
		out = (size_t)(op->tokens * op->rows);
		t->mm_flop += 2.0 * op->rows * op->cols * op->tokens;
	} else { /* q, k, v packed one after the other in the input buffer */
		const size_t d = (size_t)op->heads * (size_t)op->head_dim;
		in = (size_t)op->n * d * (size_t)(op->lq + 2 * op->lk);
		out = (size_t)op->n * d * (size_t)op->lq;
		t->attn_flop += 4.0 * op->n * op->lq * op->lk * (double)d;
	}
	t->max_in = in > t->max_in ? in : t->max_in;
	t->max_out = out > t->max_out ? out : t->max_out;
}

/* Makes the conv2d objects (one per layer shape) of the traced ops. */
static int make_kernels(struct trace *t, float *wbuf)
{
	for (int i = 0; i < t->n; i++) {
		struct kernel *k = &t->k[i];
		if (k->op.kind != UNET_OP_CONV)
			continue;
		for (int j = 0; j < i && k->conv == NULL; j++)
			if (t->k[j].op.kind == UNET_OP_CONV && same_conv(&t->k[j].op, &k->op))
				k->conv = t->k[j].conv;
		if (k->conv != NULL)
			continue;
		const struct unet_op *o = &k->op;
		struct conv2d_desc d = { .in_ch = o->in_ch, .out_ch = o->out_ch, .kh = o->kh,
		                         .kw = o->kw, .stride_h = o->stride, .stride_w = o->stride,
		                         .pad_t = o->pad_t, .pad_l = o->pad_l, .pad_b = o->pad_b,
		                         .pad_r = o->pad_r };
		if (conv2d_new(&d, DTYPE_F32, wbuf, wbuf, 0, &k->conv) != 0)
			return -1;
		k->own_conv = true;
	}
	return 0;
}

/* Runs every traced kernel once; adds the convolution, matmul and attention seconds. */
static int run_kernels(struct trace *t, const float *x, float *y, float *wbuf, double *tc,
                       double *tm, double *ta)
{
	for (int i = 0; i < t->n; i++) {
		const struct unet_op *o = &t->k[i].op;
		double t0 = bench_now();
		if (o->kind == UNET_OP_CONV) {
			if (conv2d_run(t->k[i].conv, x, o->n, o->h, o->w, y) != 0)
				return -1;
			*tc += bench_now() - t0;
		} else if (o->kind == UNET_OP_MATMUL) {
			struct cpu_weight w;
			cpu_weight_init(&w, DTYPE_F32, wbuf, o->cols, o->rows);
			if (cpu_matmul(&w, x, o->cols, o->tokens, y, o->rows, 0) != 0)
				return -1;
			*tm += bench_now() - t0;
		} else {
			const int64_t d = (int64_t)o->heads * o->head_dim;
			const float *k = x + o->n * o->lq * d, *v = k + o->n * o->lk * d;
			struct dops_attn a = { .q = x, .ldq = d, .k = k, .ldk = d, .v = v, .ldv = d,
			                       .out = y, .ldo = d, .batch = o->n, .lq = o->lq,
			                       .lk = o->lk, .n_heads = o->heads, .head_dim = o->head_dim };
			if (dops_attention(&a, 0) != 0)
				return -1;
			*ta += bench_now() - t0;
		}
	}
	return 0;
}

static void free_trace(struct trace *t)
{
	for (int i = 0; i < t->n; i++)
		if (t->k[i].own_conv)
			conv2d_free(t->k[i].conv);
	free(t->k);
}

/* ---- one case ------------------------------------------------------------------------------ */

static int bench(const char *name, const struct diff_unet_config *c, int64_t B, int64_t H,
                 int reps, const char *dir)
{
	struct st_file *f = NULL;
	struct unet *u = make_model(c, dir, &f);
	st_free(f); /* the model keeps no reference */
	if (u == NULL)
		return 1;
	const int64_t L = 77, W = H;
	const size_t nx = (size_t)(B * c->in_channels * H * W), nctx = (size_t)(B * L * c->cross_attention_dim);
	float *x = malloc(nx * sizeof *x), *ctx = malloc(nctx * sizeof *ctx);
	float *out = malloc((size_t)(B * c->out_channels * H * W) * sizeof *out);
	float t[16];
	struct trace tr = { 0 };
	int rc = 1;
	uint64_t s = 99;
	if (x == NULL || ctx == NULL || out == NULL)
		goto out;
	for (size_t i = 0; i < nx; i++)
		x[i] = frand(&s);
	for (size_t i = 0; i < nctx; i++)
		ctx[i] = frand(&s);
	for (int i = 0; i < B; i++)
		t[i] = 999.0f - 300.0f * (float)i;
	struct unet_input in = { .x = x, .batch = B, .h = H, .w = W, .t = t, .ctx = ctx,
	                         .ctx_len = L };
	/* warm-up (primitive creation) and the trace */
	if (unet_forward_traced(u, &in, out, 0, record, &tr) != 0) {
		fprintf(stderr, "bench_unet: forward failed\n");
		goto out;
	}
	size_t wmax = 0;
	for (int i = 0; i < tr.n; i++) {
		const struct unet_op *o = &tr.k[i].op;
		size_t n = o->kind == UNET_OP_CONV ? (size_t)(o->out_ch * o->in_ch * o->kh * o->kw)
		                                   : (size_t)(o->rows * o->cols);
		wmax = n > wmax ? n : wmax;
	}
	float *wbuf = malloc(wmax * sizeof *wbuf), *kx = malloc(tr.max_in * sizeof *kx);
	float *ky = malloc(tr.max_out * sizeof *ky);
	if (wbuf == NULL || kx == NULL || ky == NULL || make_kernels(&tr, wbuf) != 0) {
		free(wbuf);
		free(kx);
		free(ky);
		goto out;
	}
	for (size_t i = 0; i < wmax; i++)
		wbuf[i] = 0.02f * frand(&s);
	for (size_t i = 0; i < tr.max_in; i++)
		kx[i] = frand(&s);
	double tf[32], tk[32], tcv[32], tmm[32], tat[32];
	double dummy_c = 0, dummy_m = 0, dummy_a = 0;
	run_kernels(&tr, kx, ky, wbuf, &dummy_c, &dummy_m, &dummy_a); /* warm-up */
	for (int r = 0; r < reps; r++) { /* interleaved */
		double t0 = bench_now();
		if (unet_forward(u, &in, out, 0) != 0)
			break;
		tf[r] = bench_now() - t0;
		tcv[r] = tmm[r] = tat[r] = 0;
		if (run_kernels(&tr, kx, ky, wbuf, &tcv[r], &tmm[r], &tat[r]) != 0)
			break;
		tk[r] = tcv[r] + tmm[r];
	}
	const double mf = bench_median(tf, reps), mk = bench_median(tk, reps), mc = bench_median(tcv, reps),
	             mm = bench_median(tmm, reps), ma = bench_median(tat, reps);
	const double gf = (tr.conv_flop + tr.mm_flop) * 1e-9;
	int n_conv = 0, n_mm = 0;
	for (int i = 0; i < tr.n; i++) {
		n_conv += tr.k[i].op.kind == UNET_OP_CONV;
		n_mm += tr.k[i].op.kind == UNET_OP_MATMUL;
	}
	printf("%-5s B=%lld %lldx%lld: forward %.1f ms (%.0f GFLOP/s of conv+matmul+attention)\n"
	       "      convs + matmuls alone %.1f ms (%d convs %.1f ms, %d matmuls %.1f ms; %.2f GFLOP, "
	       "%.0f GFLOP/s): ratio %.3f\n"
	       "      + attention alone %.1f ms (%d calls, %.2f GFLOP): ratio %.3f\n", name,
	       (long long)B, (long long)H, (long long)W, mf * 1e3,
	       (gf + tr.attn_flop * 1e-9) / mf, mk * 1e3, n_conv, mc * 1e3, n_mm, mm * 1e3, gf,
	       gf / mk, mf / mk, ma * 1e3, tr.n - n_conv - n_mm, tr.attn_flop * 1e-9,
	       mf / (mk + ma));
	fflush(stdout);
	free(wbuf);
	free(kx);
	free(ky);
	rc = 0;
out:
	free_trace(&tr);
	free(x);
	free(ctx);
	free(out);
	unet_free(u);
	return rc;
}

int main(int argc, char **argv)
{
	bool quick = false, sd15 = false;
	const char *only = NULL;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0)
			quick = true;
		else if (strcmp(argv[i], "--sd15") == 0)
			sd15 = true;
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			only = argv[++i];
		else {
			fprintf(stderr, "usage: bench_unet [--quick] [--sd15] [--only tiny|mid|sd15]\n");
			return 2;
		}
	}
	char dir[256];
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof dir, "%s/inferd-bench-unet-XXXXXX", tmp ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	printf("UNet forward vs its convolutions and matmuls alone (same shapes, medians of "
	       "interleaved runs), %d threads\n", omp_get_max_threads());
	struct diff_unet_config c;
	int rc = 0;
	static const int tiny[] = { 32, 64 }, mid[] = { 128, 256, 512 };
	static const int sd[] = { 320, 640, 1280, 1280 };
	if (only != NULL && strcmp(only, "sd15") == 0)
		sd15 = true;
	base_config(&c, 2, tiny, 32, 8);
	if (only == NULL || strcmp(only, "tiny") == 0)
		rc |= bench("tiny", &c, 2, 32, quick ? 3 : 9, dir);
	base_config(&c, 3, mid, 768, 8);
	if (only == NULL || strcmp(only, "mid") == 0)
		rc |= bench("mid", &c, 2, 32, quick ? 1 : 5, dir);
	if (sd15 && (only == NULL || strcmp(only, "sd15") == 0)) {
		base_config(&c, 4, sd, 768, 8);
		rc |= bench("sd15", &c, 2, 64, quick ? 1 : 3, dir);
	}
	rmdir(dir);
	return rc;
}
