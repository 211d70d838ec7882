/* Element-wise and normalisation operators of the diffusion models against double
 * references written here, on the AVX2 and on the forced scalar path (each test runs both). */
#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "diffops_util.h"
#include "diffusion_ops.h"
#include "ops.h"

/* Runs the statement after it on the AVX2 path (scalar 0), then on the scalar one. */
static int use_path(int scalar)
{
	cpu_ops_force_scalar(scalar != 0);
	return 1;
}
#define BOTH_PATHS for (int scalar = 0; scalar < 2; scalar++) if (use_path(scalar))

static double silu_d(double x) { return x / (1.0 + exp(-x)); }
static double gelu_erf_d(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }
static double gelu_tanh_d(double x)
{
	return 0.5 * x * (1.0 + tanh(0.79788456080286536 * (x + 0.044715 * x * x * x)));
}

/* ---- group norm -------------------------------------------------------------------------- */

static void group_norm_ref(const float *x, double *y, int n, int c, int hw, int g,
                           const float *w, const float *b, double eps, int silu)
{
	int cg = c / g;
	for (int i = 0; i < n; i++)
		for (int k = 0; k < g; k++) {
			const float *p = x + ((int64_t)i * c + k * cg) * hw;
			double s = 0, ss = 0;
			for (int j = 0; j < cg * hw; j++)
				s += p[j];
			double m = s / (cg * hw);
			for (int j = 0; j < cg * hw; j++)
				ss += (p[j] - m) * (p[j] - m);
			double rs = 1.0 / sqrt(ss / (cg * hw) + eps);
			for (int j = 0; j < cg * hw; j++) {
				int ch = k * cg + j / hw;
				double v = (p[j] - m) * rs * (w ? w[ch] : 1.0) + (b ? b[ch] : 0.0);
				y[((int64_t)i * c + k * cg) * hw + j] = silu ? silu_d(v) : v;
			}
		}
}

Test(diffops, group_norm_matches_reference)
{
	const int shapes[][5] = { /* n, c, h, w, groups */
		{1, 32, 8, 8, 32}, {2, 64, 7, 5, 32}, {1, 12, 3, 11, 4}, {3, 6, 1, 1, 3},
		{1, 320, 16, 16, 32}, {2, 9, 13, 1, 9},
	};
	struct du_rng r = {1};
	BOTH_PATHS
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
		for (int silu = 0; silu < 2; silu++) {
			int n = shapes[s][0], c = shapes[s][1], hw = shapes[s][2] * shapes[s][3];
			int g = shapes[s][4];
			int64_t cnt = (int64_t)n * c * hw;
			float *x = du_alloc(cnt), *y = du_alloc(cnt), *w = du_alloc(c), *b = du_alloc(c);
			double *want = calloc((size_t)cnt, sizeof(double));
			du_fill(&r, x, cnt, 3.0f, 5.0f); /* offset mean: checks the two-pass variance */
			du_fill(&r, w, c, 1.0f, 0.5f);
			du_fill(&r, b, c, 1.0f, 0.0f);
			const float *wp = s == 2 ? NULL : w, *bp = s == 2 ? NULL : b;
			cr_assert_eq(dops_group_norm(x, y, n, c, hw, g, wp, bp, 1e-5f, silu, 0), 0);
			group_norm_ref(x, want, n, c, hw, g, wp, bp, 1e-5, silu);
			cr_expect(du_close("group_norm", y, want, cnt, 2e-5, 2e-5),
			          "scalar %d shape %zu silu %d", scalar, s, silu);
			/* in place */
			cr_assert_eq(dops_group_norm(x, x, n, c, hw, g, wp, bp, 1e-5f, silu, 0), 0);
			cr_expect(du_close("group_norm in place", x, want, cnt, 2e-5, 2e-5));
			free(x), free(y), free(w), free(b), free(want);
		}
}

Test(diffops, group_norm_random_shapes)
{
	struct du_rng r = {77};
	BOTH_PATHS
	for (int it = 0; it < 30; it++) {
		int g = 1 + (int)((du_uniform(&r) + 1.0f) * 4.0f), cg = 1 + it % 5;
		int n = 1 + it % 3, c = g * cg, hw = 1 + (int)((du_uniform(&r) + 1.0f) * 150.0f);
		int64_t cnt = (int64_t)n * c * hw;
		float *x = du_alloc(cnt), *y = du_alloc(cnt), *w = du_alloc(c), *b = du_alloc(c);
		double *want = calloc((size_t)cnt, sizeof(double));
		du_fill(&r, x, cnt, 2.0f, -1.0f);
		du_fill(&r, w, c, 1.0f, 0.0f);
		du_fill(&r, b, c, 1.0f, 0.0f);
		cr_assert_eq(dops_group_norm(x, y, n, c, hw, g, w, b, 1e-6f, it % 2, 0), 0);
		group_norm_ref(x, want, n, c, hw, g, w, b, 1e-6, it % 2);
		cr_expect(du_close("group_norm random", y, want, cnt, 5e-5, 5e-5),
		          "scalar %d: n %d c %d hw %d groups %d", scalar, n, c, hw, g);
		free(x), free(y), free(w), free(b), free(want);
	}
}

Test(diffops, group_norm_rejects_uneven_groups)
{
	float x[30] = {0}, y[30];
	cr_expect_eq(dops_group_norm(x, y, 1, 10, 3, 4, NULL, NULL, 1e-5f, false, 0), -EINVAL);
	cr_expect_eq(dops_group_norm(x, y, 1, 10, 3, 0, NULL, NULL, 1e-5f, false, 0), -EINVAL);
	cr_expect_eq(dops_group_norm(NULL, y, 1, 10, 3, 5, NULL, NULL, 1e-5f, false, 0), -EINVAL);
	cr_expect_eq(dops_group_norm(x, y, 1, 10, 3, 5, NULL, NULL, 1e-5f, false, 0), 0);
}

/* ---- layer norm, softmax --------------------------------------------------------------------- */

Test(diffops, layer_norm_matches_reference)
{
	struct du_rng r = {2};
	const int dims[][3] = {{5, 320, 330}, {77, 33, 40}, {1, 7, 7}, {300, 768, 768}};
	BOTH_PATHS
	for (size_t s = 0; s < sizeof dims / sizeof dims[0]; s++) {
		int rows = dims[s][0], len = dims[s][1], ld = dims[s][2];
		float *x = du_alloc((int64_t)rows * ld), *y = du_alloc((int64_t)rows * ld);
		float *w = du_alloc(len), *b = du_alloc(len);
		double *want = calloc((size_t)rows * len, sizeof(double));
		du_fill(&r, x, (int64_t)rows * ld, 2.0f, -1.0f);
		du_fill(&r, w, len, 1.0f, 1.0f);
		du_fill(&r, b, len, 0.5f, 0.0f);
		cr_assert_eq(dops_layer_norm(x, ld, y, len, rows, len, w, s == 2 ? NULL : b, 1e-5f, 0), 0);
		for (int i = 0; i < rows; i++) {
			double m = 0, v = 0;
			for (int j = 0; j < len; j++)
				m += x[(int64_t)i * ld + j];
			m /= len;
			for (int j = 0; j < len; j++)
				v += (x[(int64_t)i * ld + j] - m) * (x[(int64_t)i * ld + j] - m);
			double rs = 1.0 / sqrt(v / len + 1e-5);
			for (int j = 0; j < len; j++)
				want[(int64_t)i * len + j] = (x[(int64_t)i * ld + j] - m) * rs * w[j] +
				                             (s == 2 ? 0.0 : b[j]);
		}
		cr_expect(du_close("layer_norm", y, want, (int64_t)rows * len, 1e-5, 1e-5),
		          "scalar %d case %zu", scalar, s);
		free(x), free(y), free(w), free(b), free(want);
	}
	float z[4];
	cr_expect_eq(dops_layer_norm(z, 3, z, 4, 1, 4, NULL, NULL, 1e-5f, 0), -EINVAL);
}

Test(diffops, softmax_rows_matches_reference)
{
	struct du_rng r = {3};
	BOTH_PATHS
	{
		int rows = 37, len = 77, ld = 80;
		float *x = du_alloc(rows * ld);
		double *want = calloc((size_t)rows * len, sizeof(double));
		float *y = du_alloc(rows * len);
		du_fill(&r, x, rows * ld, 20.0f, 0.0f);
		for (int i = 0; i < rows; i++) {
			double m = -1e30, s = 0;
			for (int j = 0; j < len; j++)
				m = fmax(m, x[i * ld + j]);
			for (int j = 0; j < len; j++)
				s += exp(x[i * ld + j] - m);
			for (int j = 0; j < len; j++)
				want[i * len + j] = exp(x[i * ld + j] - m) / s;
		}
		cr_assert_eq(dops_softmax_rows(x, ld, rows, len, 0), 0);
		for (int i = 0; i < rows; i++)
			memcpy(y + i * len, x + i * ld, (size_t)len * sizeof(float));
		cr_expect(du_close("softmax", y, want, rows * len, 1e-6, 1e-5), "scalar %d", scalar);
		free(x), free(y), free(want);
	}
}

/* ---- activations ------------------------------------------------------------------------------ */

Test(diffops, activations_match_reference)
{
	const int64_t n = 40007; /* odd, and over the threading threshold */
	float *x = du_alloc(n), *y = du_alloc(n);
	double *want = calloc((size_t)n, sizeof(double));
	struct du_rng r = {4};
	du_fill(&r, x, n, 12.0f, 0.0f);
	x[0] = -100.0f, x[1] = 100.0f, x[2] = 0.0f, x[3] = -30.0f, x[4] = 30.0f, x[5] = -8.0f;
	BOTH_PATHS
	{
		cr_assert_eq(dops_silu(x, y, n, 0), 0);
		for (int64_t i = 0; i < n; i++)
			want[i] = silu_d(x[i]);
		cr_expect(du_close("silu", y, want, n, 1e-6, 1e-5), "scalar %d", scalar);
		cr_assert_eq(dops_gelu(x, y, n, DOPS_GELU_ERF, 0), 0);
		for (int64_t i = 0; i < n; i++)
			want[i] = gelu_erf_d(x[i]);
		cr_expect(du_close("gelu erf", y, want, n, 2e-6, 1e-5), "scalar %d", scalar);
		cr_assert_eq(dops_gelu(x, y, n, DOPS_GELU_TANH, 0), 0);
		for (int64_t i = 0; i < n; i++)
			want[i] = gelu_tanh_d(x[i]);
		cr_expect(du_close("gelu tanh", y, want, n, 2e-6, 1e-5), "scalar %d", scalar);
	}
	cr_expect_eq(dops_gelu(x, y, n, (enum dops_gelu_kind)7, 0), -EINVAL);
	free(x), free(y), free(want);
}

Test(diffops, geglu_matches_reference)
{
	const int rows = 67, len = 45, ldx = 2 * 45 + 3;
	float *x = du_alloc(rows * ldx), *y = du_alloc(rows * len);
	double *want = calloc((size_t)rows * len, sizeof(double));
	struct du_rng r = {6};
	du_fill(&r, x, rows * ldx, 4.0f, 0.0f);
	for (int i = 0; i < rows; i++)
		for (int j = 0; j < len; j++)
			want[i * len + j] = x[i * ldx + j] * gelu_erf_d(x[i * ldx + len + j]);
	BOTH_PATHS
	{
		cr_assert_eq(dops_geglu(x, ldx, y, len, rows, len, 0), 0);
		cr_expect(du_close("geglu", y, want, rows * len, 2e-6, 1e-5), "scalar %d", scalar);
	}
	cr_expect_eq(dops_geglu(x, len, y, len, rows, len, 0), -EINVAL);
	free(x), free(y), free(want);
}

/* ---- upsample and adds ------------------------------------------------------------------------ */

Test(diffops, upsample_nearest2x)
{
	const int nc = 6, h = 5, w = 13;
	float *x = du_alloc(nc * h * w), *y = du_alloc(nc * 4 * h * w);
	struct du_rng r = {7};
	du_fill(&r, x, nc * h * w, 1.0f, 0.0f);
	BOTH_PATHS
	{
		memset(y, 0, (size_t)nc * 4 * h * w * sizeof(float));
		cr_assert_eq(dops_upsample_nearest2x(x, y, nc, h, w, 0), 0);
		for (int p = 0; p < nc; p++)
			for (int i = 0; i < 2 * h; i++)
				for (int j = 0; j < 2 * w; j++)
					cr_assert_eq(y[(p * 2 * h + i) * 2 * w + j], x[(p * h + i / 2) * w + j / 2],
					             "scalar %d at %d,%d,%d", scalar, p, i, j);
	}
	cr_expect_eq(dops_upsample_nearest2x(x, y, nc, 0, w, 0), -EINVAL);
	free(x), free(y);
}

Test(diffops, adds_with_channel_broadcast)
{
	const int n = 3, c = 5, hw = 7 * 9;
	float *y = du_alloc(n * c * hw), *y0 = du_alloc(n * c * hw), *x = du_alloc(n * c * hw);
	float emb[3 * 5], bias[5];
	struct du_rng r = {8};
	du_fill(&r, y0, n * c * hw, 1.0f, 0.0f);
	du_fill(&r, x, n * c * hw, 1.0f, 0.0f);
	du_fill(&r, emb, n * c, 1.0f, 0.0f);
	du_fill(&r, bias, c, 1.0f, 0.0f);
	BOTH_PATHS
	{
		memcpy(y, y0, (size_t)n * c * hw * sizeof(float));
		cr_assert_eq(dops_add(y, x, n * c * hw, 0), 0);
		cr_assert_eq(dops_add_channel(y, emb, c, n, c, hw, 0), 0); /* per item */
		cr_assert_eq(dops_add_channel(y, bias, 0, n, c, hw, 0), 0); /* shared */
		for (int i = 0; i < n * c * hw; i++) {
			int item = i / (c * hw), ch = (i / hw) % c;
			float want = ((y0[i] + x[i]) + emb[item * c + ch]) + bias[ch];
			cr_assert_float_eq(y[i], want, 1e-6, "scalar %d at %d", scalar, i);
		}
	}
	cr_expect_eq(dops_add_channel(y, emb, 3, n, c, hw, 0), -EINVAL); /* ldb < c */
	free(y), free(y0), free(x);
}

/* ---- timestep embedding ----------------------------------------------------------------------- */

Test(diffops, timestep_embedding_conventions)
{
	const float t[3] = {0.0f, 1.0f, 999.0f};
	const int dims[] = {320, 7, 2};
	for (int flip = 0; flip < 2; flip++)
		for (int shift = 0; shift < 2; shift++)
			for (size_t di = 0; di < 3; di++) {
				struct dops_timestep_params p = {dims[di], flip, (float)shift, 1.0f, 10000.0f};
				int dim = dims[di], half = dim / 2;
				float out[3 * 320];
				int err = dops_timestep_embedding(t, 3, &p, out);
				if (half - shift == 0) {
					cr_expect_eq(err, -EINVAL);
					continue;
				}
				cr_assert_eq(err, 0);
				for (int b = 0; b < 3; b++)
					for (int i = 0; i < half; i++) {
						double f = exp(-log(10000.0) * i / (half - shift)), a = t[b] * f;
						double s = sin(a), co = cos(a);
						float *o = out + b * dim;
						/* f32 argument rounding at t = 999 allows ~1e-4 */
						cr_expect(fabs(o[flip ? half + i : i] - s) < 2e-4, "sin b%d i%d", b, i);
						cr_expect(fabs(o[flip ? i : half + i] - co) < 2e-4, "cos b%d i%d", b, i);
					}
				if (dim % 2)
					for (int b = 0; b < 3; b++)
						cr_expect_eq(out[b * dim + dim - 1], 0.0f);
			}
	struct dops_timestep_params bad = {1, true, 0.0f, 1.0f, 10000.0f};
	float o[4];
	cr_expect_eq(dops_timestep_embedding(t, 1, &bad, o), -EINVAL);
}

/* ---- layout ------------------------------------------------------------------------------------- */

Test(diffops, transpose_between_nchw_and_tokens)
{
	const int shapes[][3] = {{2, 320, 64}, {1, 13, 29}, {3, 8, 8}, {1, 1, 17}, {2, 40, 33}};
	struct du_rng r = {12};
	BOTH_PATHS
	for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
		int n = shapes[s][0], rows = shapes[s][1], cols = shapes[s][2];
		int64_t cnt = (int64_t)n * rows * cols;
		float *x = du_alloc(cnt), *y = du_alloc(cnt), *z = du_alloc(cnt);
		du_fill(&r, x, cnt, 1.0f, 0.0f);
		cr_assert_eq(dops_transpose(x, y, n, rows, cols, 0), 0);
		for (int b = 0; b < n; b++)
			for (int i = 0; i < rows; i++)
				for (int j = 0; j < cols; j++)
					cr_assert_eq(y[((int64_t)b * cols + j) * rows + i],
					             x[((int64_t)b * rows + i) * cols + j],
					             "scalar %d shape %zu at %d,%d,%d", scalar, s, b, i, j);
		cr_assert_eq(dops_transpose(y, z, n, cols, rows, 0), 0); /* and back */
		cr_expect_eq(memcmp(z, x, (size_t)cnt * sizeof(float)), 0);
		free(x), free(y), free(z);
	}
	float a[4];
	cr_expect_eq(dops_transpose(a, a + 2, 1, 0, 2, 0), -EINVAL);
}

Test(diffops, concat_channels)
{
	const int n = 2, ca = 3, cb = 5, hw = 7;
	float a[2 * 3 * 7], b[2 * 5 * 7], y[2 * 8 * 7];
	struct du_rng r = {13};
	du_fill(&r, a, n * ca * hw, 1.0f, 0.0f);
	du_fill(&r, b, n * cb * hw, 1.0f, 0.0f);
	cr_assert_eq(dops_concat_channels(a, ca, b, cb, n, hw, y), 0);
	for (int i = 0; i < n; i++)
		for (int c = 0; c < ca + cb; c++)
			for (int p = 0; p < hw; p++) {
				float want = c < ca ? a[(i * ca + c) * hw + p] : b[(i * cb + c - ca) * hw + p];
				cr_assert_eq(y[(i * (ca + cb) + c) * hw + p], want);
			}
	cr_expect_eq(dops_concat_channels(a, 0, b, cb, n, hw, y), -EINVAL);
}
