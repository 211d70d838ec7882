/* Dense multi-head attention of the UNet's transformer blocks (see diffusion_ops.h).
 *
 * Flash-attention order: the work items are (batch, head, tile of QT query rows; QT_SHORT
 * rows when the keys are few), split over the OpenMP team. For one item the keys are walked
 * in tiles of KT rows:
 *   S = scale * Qt Kt^T                (QT x KT, one single-threaded dnnl_sgemm)
 *   m' = max(m, rowmax S), P = exp(S - m'), l = l exp(m - m') + rowsum P
 *   O = O exp(m - m') + P Vt           (QT x head_dim, dnnl_sgemm with beta 1)
 * and at the end out = O / l. Scratch per thread: qt x kt + qt x head_dim floats, whatever
 * lq and lk are. Most of the time goes to the two products; the exponentials of the AVX2
 * path cost about a tenth of them at head_dim 40. The scalar path runs the same tiles with
 * plain loops (the reference for forcing scalar). */
#include "diffusion_ops.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <dnnl.h>

#include "diffusion_ops_simd.h"
#include "ops.h"

#define QT 64       /* query rows per work item */
#define QT_SHORT 256 /* ... when the keys fit one short tile (cross-attention, 77 keys):
                      * fewer, larger products */
#define KT 256       /* key rows per tile */

struct attn_scratch {
	float *s;          /* (qt, kt) scores, then probabilities */
	float *o;          /* (qt, head_dim) accumulator */
	int qt, kt;        /* tile sizes of this call */
	float m[QT_SHORT]; /* running row maxima */
	float l[QT_SHORT]; /* running row sums */
};

/* ---- softmax step on a score tile --------------------------------------------------------- */

/* Updates m, l for rows of s (mq x nk, stride ld), turns s into exp(s - m'), and returns
 * the correction factor of each row in corr. */
static void tile_softmax_scalar(float *s, int ld, int mq, int nk, float *m, float *l, float *corr)
{
	for (int i = 0; i < mq; i++) {
		float *r = s + (int64_t)i * ld, bm = m[i];
		for (int j = 0; j < nk; j++)
			bm = r[j] > bm ? r[j] : bm;
		corr[i] = expf(m[i] - bm);
		float sum = 0.0f;
		for (int j = 0; j < nk; j++) {
			r[j] = expf(r[j] - bm);
			sum += r[j];
		}
		l[i] = l[i] * corr[i] + sum;
		m[i] = bm;
	}
}

DOPS_AVX2 static void tile_softmax_avx2(float *s, int ld, int mq, int nk, float *m, float *l,
                                        float *corr)
{
	for (int i = 0; i < mq; i++) {
		float *r = s + (int64_t)i * ld;
		__m256 vmax = _mm256_set1_ps(m[i]);
		int j = 0;
		for (; j + 8 <= nk; j += 8)
			vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(r + j));
		float bm = dops_hmax(vmax);
		for (; j < nk; j++)
			bm = r[j] > bm ? r[j] : bm;
		corr[i] = expf(m[i] - bm);
		const __m256 vb = _mm256_set1_ps(bm);
		__m256 vs = _mm256_setzero_ps();
		for (j = 0; j + 8 <= nk; j += 8) {
			__m256 e = dops_exp(_mm256_sub_ps(_mm256_loadu_ps(r + j), vb));
			_mm256_storeu_ps(r + j, e);
			vs = _mm256_add_ps(vs, e);
		}
		float sum = dops_hsum(vs);
		for (; j < nk; j++) {
			r[j] = expf(r[j] - bm);
			sum += r[j];
		}
		l[i] = l[i] * corr[i] + sum;
		m[i] = bm;
	}
}

/* ---- one work item --------------------------------------------------------------------------- */

static void item_scalar(const struct dops_attn *p, const float *q, const float *k,
                        const float *v, int mq, float scale, struct attn_scratch *sc, float *corr)
{
	const int d = p->head_dim, kt = sc->kt;
	for (int64_t k0 = 0; k0 < p->lk; k0 += kt) {
		int nk = p->lk - k0 < kt ? (int)(p->lk - k0) : kt;
		for (int i = 0; i < mq; i++)
			for (int j = 0; j < nk; j++) {
				const float *qi = q + i * p->ldq, *kj = k + (k0 + j) * p->ldk;
				float acc = 0.0f;
				for (int c = 0; c < d; c++)
					acc += qi[c] * kj[c];
				sc->s[(int64_t)i * kt + j] = acc * scale;
			}
		tile_softmax_scalar(sc->s, kt, mq, nk, sc->m, sc->l, corr);
		for (int i = 0; i < mq; i++) {
			float *oi = sc->o + (int64_t)i * d;
			for (int c = 0; c < d; c++)
				oi[c] *= corr[i];
			for (int j = 0; j < nk; j++) {
				const float pj = sc->s[(int64_t)i * kt + j], *vj = v + (k0 + j) * p->ldv;
				for (int c = 0; c < d; c++)
					oi[c] += pj * vj[c];
			}
		}
	}
}

static int item_dnnl(const struct dops_attn *p, const float *q, const float *k, const float *v,
                     int mq, float scale, struct attn_scratch *sc, float *corr)
{
	const int d = p->head_dim, kt = sc->kt;
	for (int64_t k0 = 0; k0 < p->lk; k0 += kt) {
		int nk = p->lk - k0 < kt ? (int)(p->lk - k0) : kt;
		/* row-major: S (mq x nk) = scale * Q (mq x d) . K^T */
		if (dnnl_sgemm('N', 'T', mq, nk, d, scale, q, p->ldq, k + k0 * p->ldk, p->ldk, 0.0f,
		               sc->s, kt) != dnnl_success)
			return -ENOTSUP;
		tile_softmax_avx2(sc->s, kt, mq, nk, sc->m, sc->l, corr);
		for (int i = 0; i < mq; i++)
			cpu_scale_f32(sc->o + (int64_t)i * d, corr[i], d);
		/* O (mq x d) += P (mq x nk) . V (nk x d) */
		if (dnnl_sgemm('N', 'N', mq, d, nk, 1.0f, sc->s, kt, v + k0 * p->ldv, p->ldv, 1.0f,
		               sc->o, d) != dnnl_success)
			return -ENOTSUP;
	}
	return 0;
}

/* ---- driver ------------------------------------------------------------------------------------ */

static int check(const struct dops_attn *p)
{
	if (p == NULL || p->q == NULL || p->k == NULL || p->v == NULL || p->out == NULL ||
	    p->batch <= 0 || p->lq <= 0 || p->lk <= 0 || p->n_heads <= 0 || p->head_dim <= 0 ||
	    !(p->scale >= 0.0f))
		return -EINVAL;
	const int64_t hd = (int64_t)p->n_heads * p->head_dim;
	if (p->ldq < hd || p->ldk < hd || p->ldv < hd || p->ldo < hd)
		return -EINVAL;
	return 0;
}

int dops_attention(const struct dops_attn *p, int n_threads)
{
	int err = check(p);
	if (err < 0)
		return err;
	const bool simd = cpu_ops_use_simd();
	const int d = p->head_dim;
	const float scale = p->scale > 0.0f ? p->scale : 1.0f / sqrtf((float)d);
	const int kt = p->lk < KT ? (int)p->lk : KT, qt = p->lk <= KT / 2 ? QT_SHORT : QT;
	const int64_t q_tiles = (p->lq + qt - 1) / qt;
	const int64_t n_items = p->batch * p->n_heads * q_tiles;
	int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
	if (nt > n_items)
		nt = (int)n_items;
	if ((double)p->lq * (double)p->lk * d * p->n_heads * p->batch < 65536.0)
		nt = 1;
	/* With one thread there is no active parallel region, so make sure oneDNN does not
	 * start a team of its own for each small product. */
	int prev = omp_get_max_threads();
	if (nt == 1)
		omp_set_num_threads(1);
#pragma omp parallel num_threads(nt)
	{
		struct attn_scratch sc = {.qt = qt, .kt = kt};
		float corr[QT_SHORT];
		sc.s = malloc((size_t)qt * (size_t)kt * sizeof(float));
		sc.o = malloc((size_t)qt * (size_t)d * sizeof(float));
		int my = sc.s == NULL || sc.o == NULL ? -ENOMEM : 0;
#pragma omp for schedule(dynamic, 1)
		for (int64_t it = 0; it < n_items; it++) {
			if (my < 0)
				continue;
			const int64_t tq = it % q_tiles, bh = it / q_tiles;
			const int64_t b = bh / p->n_heads, h = bh % p->n_heads;
			const int64_t i0 = tq * qt;
			const int mq = p->lq - i0 < qt ? (int)(p->lq - i0) : qt;
			const float *q = p->q + (b * p->lq + i0) * p->ldq + h * d;
			const float *k = p->k + b * p->lk * p->ldk + h * d;
			const float *v = p->v + b * p->lk * p->ldv + h * d;
			for (int i = 0; i < mq; i++) {
				sc.m[i] = -INFINITY;
				sc.l[i] = 0.0f;
			}
			memset(sc.o, 0, (size_t)mq * (size_t)d * sizeof(float));
			if (simd)
				my = item_dnnl(p, q, k, v, mq, scale, &sc, corr);
			else
				item_scalar(p, q, k, v, mq, scale, &sc, corr);
			if (my < 0)
				continue;
			for (int i = 0; i < mq; i++) {
				float *o = p->out + (b * p->lq + i0 + i) * p->ldo + h * d;
				const float inv = sc.l[i] > 0.0f ? 1.0f / sc.l[i] : 0.0f;
				for (int c = 0; c < d; c++)
					o[c] = sc.o[(int64_t)i * d + c] * inv;
			}
		}
		free(sc.s);
		free(sc.o);
		if (my < 0) {
#pragma omp critical(dops_attention_err)
			err = my;
		}
	}
	if (nt == 1)
		omp_set_num_threads(prev);
	return err;
}
