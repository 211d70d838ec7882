/* The UNet (unet.h) against tests/reference/unet_ref.py (numpy, float64) on generated
 * models: inferd-mkmodel's tiny and small pipelines, and variants written by the reference
 * (linear projections, head lists, several transformer layers, LCM time conditioning, no mid
 * block, other block orders, asymmetric downsampling padding, ControlNet residuals, F16/BF16
 * weights); plus batch independence, introspection and the errors of bad models and inputs.
 *
 * Tolerance: max |C - reference| / max |reference| below 1e-4 (f32 against float64; measured
 * values are logged). */
#include <criterion/criterion.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "pipeline.h"
#include "safetensors.h"
#include "unet.h"
#include "unet_util.h"

#define TOL 1e-4

struct model {
	struct st_file *f;
	struct diff_unet_config cfg;
	struct unet *u;
	char dir[600];             /* the unet folder: config.json + weights */
};

static void model_open(struct model *m)
{
	char path[700], err[512] = "";
	snprintf(path, sizeof path, "%s/config.json", m->dir);
	cr_assert_eq(diff_unet_config_load(path, &m->cfg, err, sizeof err), 0, "%s", err);
	snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", m->dir);
	cr_assert_eq(st_open(path, &m->f, err, sizeof err), 0, "%s", err);
	cr_assert_eq(unet_new(&m->cfg, m->f, &m->u, err, sizeof err), 0, "%s", err);
}

/* inferd-mkmodel diffusion --out TMP/name args; the model is TMP/name/unet. */
static void model_mkmodel(struct model *m, const char *name, const char *args)
{
	const char *mk = getenv("INFERD_MKMODEL"), *d = unet_tmpdir();
	char cmd[1400];
	if (mk == NULL)
		cr_skip_test("INFERD_MKMODEL not set");
	cr_assert_not_null(d);
	snprintf(cmd, sizeof cmd, "'%s' diffusion --out '%s/%s' %s >/dev/null", mk, d, name, args);
	cr_assert_eq(system(cmd), 0, "%s failed", cmd);
	snprintf(m->dir, sizeof m->dir, "%s/%s/unet", d, name);
	model_open(m);
}

/* unet_ref.py make-config TMP/name args (needs numpy: skipped without). */
static void model_variant(struct model *m, const char *name, const char *args)
{
	const char *d = unet_tmpdir();
	char a[1400];
	cr_assert_not_null(d);
	snprintf(m->dir, sizeof m->dir, "%s/%s", d, name);
	snprintf(a, sizeof a, "make-config '%s' %s", m->dir, args);
	int rc = unet_run_ref(a);
	if (rc == -ENOENT)
		cr_skip_test("no python3 with numpy: reference not run");
	cr_assert_eq(rc, 0, "unet_ref.py %s failed", a);
	model_open(m);
}

static void model_close(struct model *m)
{
	unet_free(m->u);
	st_free(m->f);
	memset(m, 0, sizeof *m);
}

struct inputs {
	int64_t B, H, W, L;
	float *x, *t, *ctx, *tcond;
	float *down;               /* every skip's residual, packed, or NULL */
	float *mid;
	const float *down_ptr[1024];
	size_t n_down;
};

static void inputs_make(struct inputs *in, const struct unet *u, int64_t B, int64_t H, int64_t W,
                        const float *t, bool control, uint64_t seed)
{
	const struct diff_unet_config *c = unet_get_config(u);
	memset(in, 0, sizeof *in);
	in->B = B, in->H = H, in->W = W, in->L = 77;
	in->x = malloc((size_t)(B * c->in_channels * H * W) * sizeof(float));
	in->t = malloc((size_t)B * sizeof(float));
	in->ctx = malloc((size_t)(B * in->L * c->cross_attention_dim) * sizeof(float));
	cr_assert(in->x && in->t && in->ctx);
	unet_fill(in->x, (size_t)(B * c->in_channels * H * W), seed, 1.0f);
	unet_fill(in->ctx, (size_t)(B * in->L * c->cross_attention_dim), seed + 1, 1.0f);
	memcpy(in->t, t, (size_t)B * sizeof(float));
	if (c->time_cond_proj_dim > 0) {
		in->tcond = malloc((size_t)(B * c->time_cond_proj_dim) * sizeof(float));
		cr_assert_not_null(in->tcond);
		unet_fill(in->tcond, (size_t)(B * c->time_cond_proj_dim), seed + 2, 1.0f);
	}
	if (control) {
		size_t total = 0;
		int ch, ds;
		in->n_down = (size_t)unet_n_skips(u);
		cr_assert_leq(in->n_down, 1024);
		for (int i = 0; i < (int)in->n_down; i++) {
			cr_assert_eq(unet_skip_shape(u, i, &ch, &ds), 0);
			total += (size_t)(B * ch * (H / ds) * (W / ds));
		}
		in->down = malloc(total * sizeof(float));
		cr_assert_not_null(in->down);
		unet_fill(in->down, total, seed + 3, 0.5f);
		size_t off = 0;
		for (int i = 0; i < (int)in->n_down; i++) {
			unet_skip_shape(u, i, &ch, &ds);
			in->down_ptr[i] = in->down + off;
			off += (size_t)(B * ch * (H / ds) * (W / ds));
		}
		const int nb = c->n_blocks, cm = c->block_out_channels[nb - 1];
		const size_t nm = (size_t)(B * cm * (H >> (nb - 1)) * (W >> (nb - 1)));
		in->mid = malloc(nm * sizeof(float));
		cr_assert_not_null(in->mid);
		unet_fill(in->mid, nm, seed + 4, 0.5f);
	}
}

static struct unet_input as_input(const struct inputs *in)
{
	return (struct unet_input){ .x = in->x, .batch = in->B, .h = in->H, .w = in->W, .t = in->t,
	                            .ctx = in->ctx, .ctx_len = in->L, .t_cond = in->tcond,
	                            .down_res = in->down ? in->down_ptr : NULL, .mid_res = in->mid };
}

static void inputs_free(struct inputs *in)
{
	free(in->x);
	free(in->t);
	free(in->ctx);
	free(in->tcond);
	free(in->down);
	free(in->mid);
}

static size_t out_count(const struct model *m, const struct inputs *in)
{
	return (size_t)(in->B * m->cfg.out_channels * in->H * in->W);
}

/* C forward and the reference on the same inputs: max abs error / max abs reference value. */
static double compare(struct model *m, const struct inputs *in, const char *tag)
{
	const char *d = unet_tmpdir();
	const size_t n = out_count(m, in);
	const struct diff_unet_config *c = &m->cfg;
	float *out = malloc(n * sizeof *out);
	cr_assert_not_null(out);
	struct unet_input ui = as_input(in);
	cr_assert_eq(unet_forward(m->u, &ui, out, 0), 0);

	char px[400], pt[400], pc[400], po[400], ptc[400], pd[400], pm[400], args[4096];
	snprintf(px, sizeof px, "%s/%s.x", d, tag);
	snprintf(pt, sizeof pt, "%s/%s.t", d, tag);
	snprintf(pc, sizeof pc, "%s/%s.ctx", d, tag);
	snprintf(po, sizeof po, "%s/%s.out", d, tag);
	snprintf(ptc, sizeof ptc, "%s/%s.tcond", d, tag);
	snprintf(pd, sizeof pd, "%s/%s.down", d, tag);
	snprintf(pm, sizeof pm, "%s/%s.mid", d, tag);
	cr_assert_eq(unet_write_f32(px, in->x, (size_t)(in->B * c->in_channels * in->H * in->W)), 0);
	cr_assert_eq(unet_write_f32(pt, in->t, (size_t)in->B), 0);
	cr_assert_eq(unet_write_f32(pc, in->ctx, (size_t)(in->B * in->L * c->cross_attention_dim)),
	             0);
	int len = snprintf(args, sizeof args, "run '%s' '%s' '%s' '%s' '%s' --batch %lld --h %lld "
	                   "--w %lld --ctx-len %lld", m->dir, px, pt, pc, po, (long long)in->B,
	                   (long long)in->H, (long long)in->W, (long long)in->L);
	if (in->tcond != NULL) {
		cr_assert_eq(unet_write_f32(ptc, in->tcond, (size_t)(in->B * c->time_cond_proj_dim)), 0);
		len += snprintf(args + len, sizeof args - (size_t)len, " --t-cond '%s'", ptc);
	}
	if (in->down != NULL) {
		size_t total = 0;
		int ch, ds;
		for (size_t i = 0; i < in->n_down; i++) {
			unet_skip_shape(m->u, (int)i, &ch, &ds);
			total += (size_t)(in->B * ch * (in->H / ds) * (in->W / ds));
		}
		const int nb = c->n_blocks;
		const size_t nm = (size_t)(in->B * c->block_out_channels[nb - 1] * (in->H >> (nb - 1)) *
		                           (in->W >> (nb - 1)));
		cr_assert_eq(unet_write_f32(pd, in->down, total), 0);
		cr_assert_eq(unet_write_f32(pm, in->mid, nm), 0);
		len += snprintf(args + len, sizeof args - (size_t)len, " --down-res '%s' --mid-res '%s'",
		                pd, pm);
	}
	int rc = unet_run_ref(args);
	if (rc == -ENOENT) {
		free(out);
		cr_skip_test("no python3 with numpy: reference not run");
	}
	cr_assert_eq(rc, 0, "unet_ref.py run failed");
	double *ref = unet_read_f64(po, n);
	cr_assert_not_null(ref, "reference output has the wrong size");
	double md = 0, mx = 0;
	for (size_t i = 0; i < n; i++) {
		cr_assert(isfinite(out[i]), "output %zu is %g", i, out[i]);
		md = fmax(md, fabs(out[i] - ref[i]));
		mx = fmax(mx, fabs(ref[i]));
	}
	free(ref);
	free(out);
	cr_assert_gt(mx, 0.0);
	cr_log_info("%s: max abs diff %.3g, max abs value %.3g, relative %.3g", tag, md, mx, md / mx);
	return md / mx;
}

TestSuite(unet, .fini = unet_tmpdir_remove, .timeout = 240);

/* ---- against the reference ----------------------------------------------------------------- */

/* diffusers' tiny test UNet ([32, 64], 8 heads, cross 32) from inferd-mkmodel, B = 2 with two
 * different timesteps (one fractional), a non-square latent. */
Test(unet, tiny_mkmodel_matches_reference)
{
	struct model m = { 0 };
	struct inputs in;
	model_mkmodel(&m, "tiny", "--seed 3");
	cr_assert_eq(unet_size_multiple(m.u), 2);
	const float t[2] = { 999.0f, 17.5f };
	inputs_make(&in, m.u, 2, 16, 24, t, false, 11);
	double rel = compare(&m, &in, "tiny");
	cr_assert_lt(rel, TOL, "relative error %.3g", rel);
	inputs_free(&in);
	model_close(&m);
}

/* inferd-mkmodel --size small ([64, 128, 256], three levels), F16 weights. */
Test(unet, small_f16_mkmodel_matches_reference)
{
	struct model m = { 0 };
	struct inputs in;
	model_mkmodel(&m, "small", "--size small --dtype f16 --seed 5");
	cr_assert_eq(unet_size_multiple(m.u), 4);
	const float t[1] = { 261.0f };
	inputs_make(&in, m.u, 1, 16, 16, t, false, 12);
	double rel = compare(&m, &in, "small");
	cr_assert_lt(rel, TOL, "relative error %.3g", rel);
	inputs_free(&in);
	model_close(&m);
}

/* SD 2-style linear projections with a head list under num_attention_heads, two transformer
 * layers on one level, an LCM guidance embedding, no mid block, centred input, freq_shift 1,
 * sin before cos; B = 2 at different timesteps. */
Test(unet, linear_lcm_no_mid_variant_matches_reference)
{
	struct model m = { 0 };
	struct inputs in;
	model_variant(&m, "lcm", "--channels 32,64 --heads 2,4 --num-attention-heads "
	              "--transformer-layers 1,2 --linear-projection --no-mid --time-cond-dim 16 "
	              "--center --freq-shift 1 --no-flip --groups 16 --cross 24 --seed 7");
	cr_assert_eq(m.cfg.time_cond_proj_dim, 16);
	cr_assert(!m.cfg.has_mid_block);
	cr_assert(m.cfg.use_linear_projection);
	const float t[2] = { 499.0f, 3.0f };
	inputs_make(&in, m.u, 2, 8, 16, t, false, 13);
	double rel = compare(&m, &in, "lcm");
	cr_assert_lt(rel, TOL, "relative error %.3g", rel);

	/* t_cond is required by this model */
	struct unet_input ui = as_input(&in);
	float *out = malloc(out_count(&m, &in) * sizeof *out);
	ui.t_cond = NULL;
	cr_assert_eq(unet_forward(m.u, &ui, out, 0), -EINVAL);
	free(out);
	inputs_free(&in);
	model_close(&m);
}

/* Other block orders on three levels (plain first, cross-attention last), one resnet per
 * block, the (0, 1, 0, 1) downsampling padding, a mid-block scale factor, BF16 weights and
 * ControlNet residuals on every skip and the mid block. */
Test(unet, block_orders_and_controlnet_residuals_match_reference)
{
	struct model m = { 0 };
	struct inputs in;
	model_variant(&m, "ctrl", "--channels 32,32,64 --down Down,CrossAttnDown,CrossAttnDown "
	              "--up CrossAttnUp,Up,CrossAttnUp --heads 2,4,8 --layers-per-block 1 "
	              "--downsample-padding 0 --mid-scale 1.5 --dtype bf16 --seed 9");
	cr_assert_eq(unet_n_skips(m.u), 1 + 1 + 1 + 1 + 1 + 1);
	const float t[2] = { 10.0f, 750.25f };
	inputs_make(&in, m.u, 2, 8, 12, t, true, 14);
	double rel = compare(&m, &in, "ctrl");
	cr_assert_lt(rel, TOL, "relative error %.3g", rel);
	inputs_free(&in);
	model_close(&m);
}

/* ---- properties without the reference ------------------------------------------------------ */

static void run_out(const struct model *m, const struct inputs *in, float *out, int nt)
{
	struct unet_input ui = as_input(in);
	cr_assert_eq(unet_forward(m->u, &ui, out, nt), 0);
}

/* Items of a batch are independent: B = 2 equals two B = 1 calls, on 1 and 2 threads; zero
 * ControlNet residuals change nothing. */
Test(unet, batch_items_are_independent)
{
	struct model m = { 0 };
	struct inputs in, one;
	model_mkmodel(&m, "batch", "--seed 4");
	const float t[2] = { 1.0f, 900.0f };
	inputs_make(&in, m.u, 2, 8, 8, t, true, 21);
	const size_t n = out_count(&m, &in), half = n / 2;
	float *all = malloc(n * sizeof *all), *o1 = malloc(half * sizeof *o1);
	float *o2 = malloc(n * sizeof *o2);
	cr_assert(all && o1 && o2);
	/* zero residuals: same output as none */
	memset(in.mid, 0, (size_t)(2 * 64 * 4 * 4) * sizeof(float));
	size_t total = 0;
	for (size_t i = 0; i < in.n_down; i++) {
		int ch, ds;
		unet_skip_shape(m.u, (int)i, &ch, &ds);
		total += (size_t)(2 * ch * (8 / ds) * (8 / ds));
	}
	memset(in.down, 0, total * sizeof(float));
	run_out(&m, &in, all, 2);
	float *d = in.down, *mid = in.mid;
	in.down = NULL;
	in.mid = NULL;
	run_out(&m, &in, o2, 1);
	for (size_t i = 0; i < n; i++)
		cr_assert_float_eq(all[i], o2[i], 1e-5, "zero residuals changed output %zu", i);
	in.down = d;
	in.mid = mid;
	for (int b = 0; b < 2; b++) {
		one = in;
		one.B = 1;
		one.down = NULL;
		one.mid = NULL;
		one.x = in.x + (size_t)b * 4 * 64;
		one.t = in.t + b;
		one.ctx = in.ctx + (size_t)b * 77 * 32;
		run_out(&m, &one, o1, b + 1);
		for (size_t i = 0; i < half; i++)
			cr_assert_float_eq(o1[i], all[(size_t)b * half + i], 1e-5, "item %d, value %zu", b, i);
	}
	free(all);
	free(o1);
	free(o2);
	inputs_free(&in);
	model_close(&m);
}

struct job {
	const struct model *m;
	const struct inputs *in;
	float *out;
	int rc;
};

static void *run_job(void *arg)
{
	struct job *j = arg;
	struct unet_input ui = as_input(j->in);
	j->rc = unet_forward(j->m->u, &ui, j->out, 1);
	return NULL;
}

/* A model is immutable: two threads run forwards on it at the same time (one OpenMP thread
 * each) and get what one call gets. */
Test(unet, concurrent_forwards_on_one_model)
{
	struct model m = { 0 };
	struct inputs a, b;
	model_mkmodel(&m, "conc", "--seed 10");
	const float ta[1] = { 100.0f }, tb[1] = { 700.0f };
	inputs_make(&a, m.u, 1, 16, 8, ta, false, 31);
	inputs_make(&b, m.u, 1, 16, 8, tb, false, 32);
	const size_t n = out_count(&m, &a);
	float *ra = malloc(n * sizeof *ra), *rb = malloc(n * sizeof *rb);
	float *oa = malloc(n * sizeof *oa), *ob = malloc(n * sizeof *ob);
	cr_assert(ra && rb && oa && ob);
	run_out(&m, &a, ra, 2);
	run_out(&m, &b, rb, 2);
	for (int rep = 0; rep < 3; rep++) {
		struct job ja = { &m, &a, oa, -1 }, jb = { &m, &b, ob, -1 };
		pthread_t th[2];
		cr_assert_eq(pthread_create(&th[0], NULL, run_job, &ja), 0);
		cr_assert_eq(pthread_create(&th[1], NULL, run_job, &jb), 0);
		pthread_join(th[0], NULL);
		pthread_join(th[1], NULL);
		cr_assert_eq(ja.rc, 0);
		cr_assert_eq(jb.rc, 0);
		for (size_t i = 0; i < n; i++) {
			cr_assert_float_eq(oa[i], ra[i], 1e-5, "thread a, value %zu", i);
			cr_assert_float_eq(ob[i], rb[i], 1e-5, "thread b, value %zu", i);
		}
	}
	free(ra);
	free(rb);
	free(oa);
	free(ob);
	inputs_free(&a);
	inputs_free(&b);
	model_close(&m);
}

struct counts {
	int conv, matmul, attn;
	double flop;
};

static void count_op(const struct unet_op *op, void *arg)
{
	struct counts *c = arg;
	if (op->kind == UNET_OP_CONV) {
		c->conv++;
		c->flop += 2.0 * op->n * op->out_ch * op->in_ch * op->kh * op->kw * (op->h / op->stride) *
		           (op->w / op->stride);
	} else if (op->kind == UNET_OP_MATMUL) {
		c->matmul++;
		c->flop += 2.0 * op->rows * op->cols * op->tokens;
	} else {
		cr_assert_eq(op->kind, UNET_OP_ATTENTION);
		cr_assert_eq(op->heads, 8);  /* tiny: 8 heads on every level */
		cr_assert(op->lk == 77 || op->lk == op->lq, "lq %lld, lk %lld", (long long)op->lq,
		          (long long)op->lk);
		c->attn++;
	}
}

/* The skips and the traced kernels of the tiny model. */
Test(unet, introspection_of_the_tiny_model)
{
	struct model m = { 0 };
	struct inputs in;
	model_mkmodel(&m, "intro", "--seed 2");
	static const int ch[6] = { 32, 32, 32, 32, 64, 64 }, ds[6] = { 1, 1, 1, 2, 2, 2 };
	cr_assert_eq(unet_n_skips(m.u), 6);
	for (int i = 0; i < 6; i++) {
		int c, s;
		cr_assert_eq(unet_skip_shape(m.u, i, &c, &s), 0);
		cr_assert_eq(c, ch[i], "skip %d: %d channels", i, c);
		cr_assert_eq(s, ds[i], "skip %d: downscale %d", i, s);
	}
	cr_assert_eq(unet_skip_shape(m.u, 6, NULL, NULL), -EINVAL);
	cr_assert_eq(unet_skip_shape(m.u, -1, NULL, NULL), -EINVAL);

	const float t[1] = { 5.0f };
	inputs_make(&in, m.u, 1, 8, 8, t, false, 3);
	float *out = malloc(out_count(&m, &in) * sizeof *out);
	struct counts c = { 0 };
	struct unet_input ui = as_input(&in);
	cr_assert_eq(unet_forward_traced(m.u, &ui, out, 0, count_op, &c), 0);
	/* convs: conv_in, conv_out, 2 per resnet (4 down + 2 mid + 6 up), shortcuts (down 1 + up 6),
	 * 1 down- and 1 upsampler, 2 per 1x1-projected transformer (2 down + 1 mid + 3 up) */
	cr_assert_eq(c.conv, 2 + 24 + 7 + 2 + 12, "%d convolutions", c.conv);
	/* matmuls: 2 time MLP + 1 per resnet (12) + 7 per transformer layer (6) */
	cr_assert_eq(c.matmul, 2 + 12 + 42, "%d matmuls", c.matmul);
	cr_assert_eq(c.attn, 2 * 6, "%d attentions", c.attn);
	cr_log_info("tiny at 8x8: %d convolutions, %d matmuls, %.3g MFLOP", c.conv, c.matmul,
	            c.flop * 1e-6);
	free(out);
	inputs_free(&in);
	model_close(&m);
}

/* ---- errors ------------------------------------------------------------------------------------- */

Test(unet, bad_inputs_are_refused)
{
	struct model m = { 0 };
	struct inputs in;
	model_mkmodel(&m, "bad", "--seed 6");
	const float t[1] = { 5.0f };
	inputs_make(&in, m.u, 1, 8, 8, t, true, 3);
	float *out = malloc(out_count(&m, &in) * sizeof *out);
	struct unet_input ui = as_input(&in), b;
	cr_assert_eq(unet_forward(NULL, &ui, out, 0), -EINVAL);
	cr_assert_eq(unet_forward(m.u, NULL, out, 0), -EINVAL);
	cr_assert_eq(unet_forward(m.u, &ui, NULL, 0), -EINVAL);
	b = ui, b.x = NULL;
	cr_assert_eq(unet_forward(m.u, &b, out, 0), -EINVAL);
	b = ui, b.t = NULL;
	cr_assert_eq(unet_forward(m.u, &b, out, 0), -EINVAL);
	b = ui, b.ctx = NULL;
	cr_assert_eq(unet_forward(m.u, &b, out, 0), -EINVAL);
	b = ui, b.batch = 0;
	cr_assert_eq(unet_forward(m.u, &b, out, 0), -EINVAL);
	b = ui, b.h = 7;                       /* not a multiple of 2 */
	cr_assert_eq(unet_forward(m.u, &b, out, 0), -EINVAL);
	b = ui, b.w = 0;
	cr_assert_eq(unet_forward(m.u, &b, out, 0), -EINVAL);
	b = ui, b.h = -8;
	cr_assert_eq(unet_forward(m.u, &b, out, 0), -EINVAL);
	b = ui, b.ctx_len = 0;
	cr_assert_eq(unet_forward(m.u, &b, out, 0), -EINVAL);
	b = ui, b.h = (int64_t)1 << 40;
	cr_assert_eq(unet_forward(m.u, &b, out, 0), -EINVAL);
	const float *holes[8] = { in.down_ptr[0], NULL };
	b = ui, b.down_res = holes;            /* a missing residual */
	cr_assert_eq(unet_forward(m.u, &b, out, 0), -EINVAL);
	cr_assert_eq(unet_forward(m.u, &ui, out, 0), 0);
	cr_assert_eq(unet_size_multiple(NULL), 0);
	cr_assert_eq(unet_n_skips(NULL), 0);
	cr_assert_null(unet_get_config(NULL));
	unet_free(NULL);
	free(out);
	inputs_free(&in);
	model_close(&m);
}

/* unet_new on a config the file does not match, or a config this engine does not run. */
static int try_new(const struct model *m, const struct diff_unet_config *c, char *err, size_t len)
{
	struct unet *u = (struct unet *)1;
	int rc = unet_new(c, m->f, &u, err, len);
	if (rc != 0)
		cr_assert_null(u, "no model on failure");
	unet_free(rc == 0 ? u : NULL);
	return rc;
}

Test(unet, bad_models_are_refused_with_the_tensor_named)
{
	struct model m = { 0 };
	char err[512];
	model_mkmodel(&m, "badm", "--seed 8");
	struct diff_unet_config c = m.cfg;

	c.time_cond_proj_dim = 8;              /* the file has no cond_proj */
	cr_assert_eq(try_new(&m, &c, err, sizeof err), -EBADMSG);
	cr_assert_not_null(strstr(err, "time_embedding.cond_proj.weight"), "%s", err);
	cr_assert_not_null(strstr(err, "missing"), "%s", err);

	c = m.cfg;
	c.cross_attention_dim = 48;            /* attn2.to_k is [32, 32] in the file */
	cr_assert_eq(try_new(&m, &c, err, sizeof err), -EBADMSG);
	cr_assert_not_null(strstr(err, "attn2.to_k.weight"), "%s", err);
	cr_assert_not_null(strstr(err, "shape"), "%s", err);

	c = m.cfg;
	c.attention_heads[0] = 3;              /* does not divide 32 */
	cr_assert_eq(try_new(&m, &c, err, sizeof err), -EINVAL);
	cr_assert_not_null(strstr(err, "heads"), "%s", err);

	c = m.cfg;
	c.norm_num_groups = 24;
	cr_assert_eq(try_new(&m, &c, err, sizeof err), -EINVAL);

	c = m.cfg;
	c.n_blocks = 0;
	cr_assert_eq(try_new(&m, &c, err, sizeof err), -EINVAL);

	c = m.cfg;
	c.down_blocks[1] = DIFF_BLOCK_DOWN_ENCODER;
	cr_assert_eq(try_new(&m, &c, err, sizeof err), -ENOTSUP);
	cr_assert_not_null(strstr(err, "DownEncoderBlock2D"), "%s", err);

	c = m.cfg;
	c.downsample_padding = 2;
	cr_assert_eq(try_new(&m, &c, err, sizeof err), -ENOTSUP);

	struct unet *u = NULL;
	cr_assert_eq(unet_new(NULL, m.f, &u, err, sizeof err), -EINVAL);
	cr_assert_eq(unet_new(&m.cfg, NULL, &u, err, sizeof err), -EINVAL);
	cr_assert_eq(unet_new(&m.cfg, m.f, NULL, err, sizeof err), -EINVAL);
	cr_assert_eq(try_new(&m, &m.cfg, NULL, 0), 0);  /* no error buffer is fine */
	model_close(&m);
}

/* The model from a whole diffusers folder opened by the pipeline loader. */
Test(unet, from_the_pipeline_loader)
{
	const char *mk = getenv("INFERD_MKMODEL"), *d = unet_tmpdir();
	char cmd[1400], dir[600], err[512] = "";
	if (mk == NULL)
		cr_skip_test("INFERD_MKMODEL not set");
	snprintf(dir, sizeof dir, "%s/pipe", d);
	snprintf(cmd, sizeof cmd, "'%s' diffusion --out '%s' --seed 3 >/dev/null", mk, dir);
	cr_assert_eq(system(cmd), 0);
	struct diff_pipeline *p = NULL;
	cr_assert_eq(diff_pipeline_open(dir, &p, err, sizeof err), 0, "%s", err);
	struct unet *u = NULL;
	cr_assert_eq(unet_new(diff_pipeline_unet(p), diff_pipeline_unet_weights(p), &u, err,
	                      sizeof err), 0, "%s", err);
	diff_pipeline_free(p); /* the model keeps no reference to the file */
	struct inputs in;
	const float t[1] = { 42.0f };
	inputs_make(&in, u, 1, 8, 8, t, false, 5);
	float out[4 * 64];
	struct unet_input ui = as_input(&in);
	cr_assert_eq(unet_forward(u, &ui, out, 0), 0);
	for (int i = 0; i < 4 * 64; i++)
		cr_assert(isfinite(out[i]));
	inputs_free(&in);
	unet_free(u);
}
