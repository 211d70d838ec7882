/* conv2d (oneDNN) against conv2d_reference and against a double-precision loop written
 * here; shapes with odd sizes, strides, asymmetric padding, F16 weights, the shape cache,
 * concurrent calls and bad arguments. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "conv.h"
#include "diffops_util.h"

/* No pointers: criterion runs each case in a fresh process. */
struct conv_case {
	int n, cin, cout, h, w, kh, kw, sh, sw, pt, pl, pb, pr;
	int bias, f16, blocked;
};

ParameterizedTestParameters(conv2d, matches_reference)
{
	static struct conv_case cases[] = {
		/* n cin cout  h  w kh kw sh sw pt pl pb pr bias f16 blocked */
		{1, 4, 8, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0},   /* 3x3 "same" */
		{2, 5, 7, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0},    /* odd everything */
		{1, 8, 16, 13, 7, 1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 0},   /* 1x1 projection */
		{2, 6, 6, 15, 10, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0},   /* UNet downsample */
		{1, 4, 4, 10, 12, 3, 3, 2, 2, 0, 0, 1, 1, 1, 0, 0},   /* VAE downsample (0,1,0,1) */
		{1, 4, 4, 10, 12, 3, 3, 2, 2, 0, 0, 1, 1, 1, 0, 1},   /* same, blocked */
		{2, 5, 7, 9, 11, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1},    /* odd, F16, blocked */
		{1, 3, 9, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, 0},     /* no bias, RGB in */
		{3, 16, 8, 6, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 0},    /* F16 weights */
		{1, 5, 3, 9, 9, 5, 3, 1, 2, 2, 1, 2, 1, 1, 0, 0},     /* 5x3 kernel, mixed */
		{2, 8, 8, 12, 12, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1},   /* blocked activations, reorders */
		{1, 4, 4, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0},     /* 1x1 image */
		{1, 32, 32, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0},   /* wider */
	};
	return cr_make_param_array(struct conv_case, cases, sizeof cases / sizeof cases[0]);
}

/* Independent double-precision loop, F16-rounded weights when asked. */
static void naive(const struct conv_case *k, const float *wt, const float *b, const float *x,
                  int oh, int ow, double *y)
{
	for (int n = 0; n < k->n; n++)
		for (int o = 0; o < k->cout; o++)
			for (int i = 0; i < oh; i++)
				for (int j = 0; j < ow; j++) {
					double s = b != NULL ? b[o] : 0.0;
					for (int c = 0; c < k->cin; c++)
						for (int u = 0; u < k->kh; u++)
							for (int v = 0; v < k->kw; v++) {
								int yy = i * k->sh + u - k->pt, xx = j * k->sw + v - k->pl;
								if (yy < 0 || yy >= k->h || xx < 0 || xx >= k->w)
									continue;
								s += (double)wt[((o * k->cin + c) * k->kh + u) * k->kw + v] *
								     x[((n * k->cin + c) * k->h + yy) * k->w + xx];
							}
					y[((n * k->cout + o) * oh + i) * ow + j] = s;
				}
}

ParameterizedTest(struct conv_case *k, conv2d, matches_reference)
{
	struct conv2d_desc d = {k->cin, k->cout, k->kh, k->kw, k->sh, k->sw,
	                        k->pt, k->pl, k->pb, k->pr};
	const int64_t wn = (int64_t)k->cout * k->cin * k->kh * k->kw;
	const int64_t xn = (int64_t)k->n * k->cin * k->h * k->w;
	struct du_rng r = {(uint64_t)(k->cin * 131 + k->cout * 7 + k->h)};
	float *wt = du_alloc(wn), *b = du_alloc(k->cout), *x = du_alloc(xn);
	uint16_t *w16 = calloc((size_t)wn, 2), *b16 = calloc((size_t)k->cout, 2);
	du_fill(&r, wt, wn, 0.5f, 0.0f);
	du_fill(&r, b, k->cout, 1.0f, 0.0f);
	du_fill(&r, x, xn, 1.0f, 0.1f);
	if (k->f16) { /* round the weights to F16 so both sides see the same values */
		for (int64_t i = 0; i < wn; i++) {
			w16[i] = dtype_f32_to_f16(wt[i]);
			wt[i] = dtype_f16_to_f32(w16[i]);
		}
		for (int i = 0; i < k->cout; i++) {
			b16[i] = dtype_f32_to_f16(b[i]);
			b[i] = dtype_f16_to_f32(b16[i]);
		}
	}
	struct conv2d *c = NULL;
	int err = k->f16 ? conv2d_new(&d, DTYPE_F16, w16, k->bias ? b16 : NULL,
	                              k->blocked ? CONV2D_BLOCKED_IO : 0, &c)
	                 : conv2d_new(&d, DTYPE_F32, wt, k->bias ? b : NULL,
	                              k->blocked ? CONV2D_BLOCKED_IO : 0, &c);
	cr_assert_eq(err, 0, "conv2d_new: %d", err);
	int64_t oh, ow;
	cr_assert_eq(conv2d_out_size(c, k->h, k->w, &oh, &ow), 0);
	cr_assert_eq(oh, (k->h + k->pt + k->pb - k->kh) / k->sh + 1);
	cr_assert_eq(ow, (k->w + k->pl + k->pr - k->kw) / k->sw + 1);
	const int64_t yn = (int64_t)k->n * k->cout * oh * ow;
	float *y = du_alloc(yn), *yr = du_alloc(yn);
	double *want = calloc((size_t)yn, sizeof(double));
	cr_assert_eq(conv2d_run(c, x, k->n, k->h, k->w, y), 0);
	naive(k, wt, k->bias ? b : NULL, x, (int)oh, (int)ow, want);
	double atol = 1e-5 * k->cin * k->kh * k->kw;
	cr_expect(du_close("conv2d_run", y, want, yn, atol, 1e-5));
	cr_assert_eq(conv2d_reference(&d, wt, k->bias ? b : NULL, x, k->n, k->h, k->w, yr), 0);
	cr_expect(du_close("conv2d_reference", yr, want, yn, 1e-6, 1e-6));
	/* second call: same cached primitive, same result */
	memset(y, 0, (size_t)yn * sizeof *y);
	cr_assert_eq(conv2d_run(c, x, k->n, k->h, k->w, y), 0);
	cr_expect(du_close("conv2d_run again", y, want, yn, atol, 1e-5));
	cr_expect_eq(conv2d_cached_shapes(c), 1);
	conv2d_free(c);
	free(wt), free(b), free(x), free(w16), free(b16), free(y), free(yr), free(want);
}

Test(conv2d, caches_one_primitive_per_shape)
{
	struct conv2d_desc d = {6, 4, 3, 3, 1, 1, 1, 1, 1, 1};
	struct du_rng r = {5};
	float wt[4 * 6 * 9], b[4];
	du_fill(&r, wt, 4 * 6 * 9, 0.5f, 0.0f);
	du_fill(&r, b, 4, 0.5f, 0.0f);
	struct conv2d *c;
	cr_assert_eq(conv2d_new(&d, DTYPE_F32, wt, b, 0, &c), 0);
	const int shapes[][3] = {{1, 8, 8}, {2, 8, 8}, {1, 5, 7}, {1, 8, 8}, {2, 8, 8}};
	for (int s = 0; s < 5; s++) {
		int n = shapes[s][0], h = shapes[s][1], w = shapes[s][2];
		float *x = du_alloc(n * 6 * h * w), *y = du_alloc(n * 4 * h * w);
		float *yr = du_alloc(n * 4 * h * w);
		double *want = calloc((size_t)(n * 4 * h * w), sizeof(double));
		du_fill(&r, x, n * 6 * h * w, 1.0f, 0.0f);
		cr_assert_eq(conv2d_run(c, x, n, h, w, y), 0);
		cr_assert_eq(conv2d_reference(&d, wt, b, x, n, h, w, yr), 0);
		for (int i = 0; i < n * 4 * h * w; i++)
			want[i] = yr[i];
		cr_expect(du_close("shape", y, want, n * 4 * h * w, 1e-4, 1e-5), "shape %d", s);
		free(x), free(y), free(yr), free(want);
	}
	cr_expect_eq(conv2d_cached_shapes(c), 3);
	conv2d_free(c);
}

struct thr_arg {
	struct conv2d *c;
	const float *x;
	float *y;
	int err;
};

static void *thr_run(void *p)
{
	struct thr_arg *a = p;
	for (int i = 0; i < 4 && a->err == 0; i++)
		a->err = conv2d_run(a->c, a->x, 1, 16 + i % 2, 16, a->y);
	return NULL;
}

Test(conv2d, concurrent_calls_on_one_layer)
{
	/* four threads on one layer, on both layouts: shared shape cache, primitives run from
	 * threads other than the one that made them, pooled scratchpads */
	struct conv2d_desc d = {8, 8, 3, 3, 1, 1, 1, 1, 1, 1};
	struct du_rng r = {9};
	enum { HW = 8 * 17 * 16, NT = 4 };
	static float wt[8 * 8 * 9], x[HW], y[NT][HW], ref[HW];
	static double want[HW];
	du_fill(&r, wt, 8 * 8 * 9, 0.5f, 0.0f);
	du_fill(&r, x, HW, 1.0f, 0.0f);
	/* the last call of each thread is 17 x 16 */
	cr_assert_eq(conv2d_reference(&d, wt, NULL, x, 1, 17, 16, ref), 0);
	for (int i = 0; i < HW; i++)
		want[i] = ref[i];
	for (int blocked = 0; blocked < 2; blocked++) {
		struct conv2d *c;
		cr_assert_eq(conv2d_new(&d, DTYPE_F32, wt, NULL, blocked ? CONV2D_BLOCKED_IO : 0, &c), 0);
		struct thr_arg a[NT];
		pthread_t t[NT];
		for (int i = 0; i < NT; i++) {
			a[i] = (struct thr_arg){c, x, y[i], 0};
			cr_assert_eq(pthread_create(&t[i], NULL, thr_run, &a[i]), 0);
		}
		for (int i = 0; i < NT; i++) {
			pthread_join(t[i], NULL);
			cr_expect_eq(a[i].err, 0);
			cr_expect(du_close("thread", y[i], want, HW, 1e-4, 1e-5), "blocked %d thread %d",
			          blocked, i);
		}
		cr_expect_eq(conv2d_cached_shapes(c), 2);
		conv2d_free(c);
	}
}

Test(conv2d, rejects_bad_arguments)
{
	float wt[2 * 2 * 9] = {0}, x[2 * 4 * 4] = {0}, y[2 * 4 * 4];
	struct conv2d_desc d = {2, 2, 3, 3, 1, 1, 1, 1, 1, 1};
	struct conv2d *c = NULL;
	cr_expect_eq(conv2d_new(NULL, DTYPE_F32, wt, NULL, 0, &c), -EINVAL);
	cr_expect_eq(conv2d_new(&d, DTYPE_F32, NULL, NULL, 0, &c), -EINVAL);
	cr_expect_eq(conv2d_new(&d, DTYPE_Q8_0, wt, NULL, 0, &c), -ENOTSUP);
	struct conv2d_desc bad = d;
	bad.in_ch = 0;
	cr_expect_eq(conv2d_new(&bad, DTYPE_F32, wt, NULL, 0, &c), -EINVAL);
	bad = d;
	bad.stride_h = 0;
	cr_expect_eq(conv2d_new(&bad, DTYPE_F32, wt, NULL, 0, &c), -EINVAL);
	bad = d;
	bad.pad_l = 3; /* a padding as wide as the kernel */
	cr_expect_eq(conv2d_new(&bad, DTYPE_F32, wt, NULL, 0, &c), -EINVAL);
	bad = d;
	bad.pad_t = bad.pad_b = bad.pad_l = bad.pad_r = 0;
	cr_assert_eq(conv2d_new(&bad, DTYPE_F32, wt, NULL, 0, &c), 0);
	cr_expect_eq(conv2d_run(c, x, 1, 2, 8, y), -EINVAL); /* kernel taller than the image */
	cr_expect_eq(conv2d_run(c, x, 0, 4, 4, y), -EINVAL);
	cr_expect_eq(conv2d_run(c, NULL, 1, 4, 4, y), -EINVAL);
	cr_expect_eq(conv2d_run(NULL, x, 1, 4, 4, y), -EINVAL);
	cr_expect_eq(conv2d_cached_shapes(c), 0);
	conv2d_free(c);
	conv2d_free(NULL);
}

/* A whole number in [lo, hi]. */
static int draw(struct du_rng *r, int lo, int hi)
{
	int v = lo + (int)((du_uniform(r) + 1.0f) * 0.5f * (float)(hi - lo + 1));
	return v > hi ? hi : v;
}

Test(conv2d, random_shapes_match_reference)
{
	struct du_rng r = {2026};
	for (int it = 0; it < 40; it++) {
		/* sizes drawn from small odd ranges; padding below the kernel size */
		int kh = draw(&r, 1, 4), kw = draw(&r, 1, 4);
		struct conv2d_desc d = {
			.in_ch = draw(&r, 1, 13),
			.out_ch = draw(&r, 1, 13),
			.kh = kh, .kw = kw,
			.stride_h = 1 + (it % 2), .stride_w = 1 + (it / 2) % 2,
			.pad_t = it % kh, .pad_l = (it / 3) % kw, .pad_b = (it / 2) % kh, .pad_r = it % kw,
		};
		int n = 1 + it % 3;
		int h = kh + draw(&r, 0, 12), w = kw + draw(&r, 0, 12);
		int64_t wn = (int64_t)d.out_ch * d.in_ch * kh * kw, xn = (int64_t)n * d.in_ch * h * w;
		float *wt = du_alloc(wn), *b = du_alloc(d.out_ch), *x = du_alloc(xn);
		du_fill(&r, wt, wn, 0.5f, 0.0f);
		du_fill(&r, b, d.out_ch, 0.5f, 0.0f);
		du_fill(&r, x, xn, 1.0f, 0.0f);
		struct conv2d *c;
		unsigned flags = it % 5 ? 0 : CONV2D_BLOCKED_IO;
		cr_assert_eq(conv2d_new(&d, DTYPE_F32, wt, it % 4 ? b : NULL, flags, &c), 0, "case %d", it);
		int64_t oh, ow;
		cr_assert_eq(conv2d_out_size(c, h, w, &oh, &ow), 0);
		int64_t yn = (int64_t)n * d.out_ch * oh * ow;
		float *y = du_alloc(yn), *yr = du_alloc(yn);
		double *want = calloc((size_t)yn, sizeof(double));
		cr_assert_eq(conv2d_run(c, x, n, h, w, y), 0, "case %d", it);
		cr_assert_eq(conv2d_reference(&d, wt, it % 4 ? b : NULL, x, n, h, w, yr), 0);
		for (int64_t i = 0; i < yn; i++)
			want[i] = yr[i];
		cr_expect(du_close("random conv", y, want, yn, 1e-4, 1e-5),
		          "case %d: %dx%d k%dx%d s%d,%d p%d,%d,%d,%d ci%d co%d n%d", it, h, w, kh, kw,
		          d.stride_h, d.stride_w, d.pad_t, d.pad_l, d.pad_b, d.pad_r, d.in_ch, d.out_ch,
		          n);
		conv2d_free(c);
		free(wt), free(b), free(x), free(y), free(yr), free(want);
	}
}
