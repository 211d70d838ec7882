/* Paged attention over an f32 or f16 KV cache (see attention.h). */
#include "attention.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <immintrin.h>
#include <omp.h>

#include "ops.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define GROUP_CHUNK 16 /* query heads of one kv head handled together */
#define ATTN_PAR_MIN (1 << 17) /* multiply-adds below which one thread runs the call */

/* Index of the sequence holding query row r (seqs sorted by q_row). */
static int seq_of_row(const struct attn_params *p, int64_t r)
{
	int lo = 0, hi = p->n_seqs - 1;
	while (lo < hi) {
		int mid = (lo + hi + 1) / 2;
		if (p->seqs[mid].q_row <= r)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

static int check(const struct attn_params *p, int64_t *row0, int64_t *n_rows)
{
	if (p == NULL || p->q == NULL || p->out == NULL || p->k_cache == NULL ||
	    p->v_cache == NULL || p->seqs == NULL || p->n_seqs <= 0)
		return -EINVAL;
	if (p->kv_type != DTYPE_F32 && p->kv_type != DTYPE_F16)
		return -ENOTSUP;
	if (p->head_dim <= 0 || p->head_dim > ATTN_MAX_HEAD_DIM || p->block_size <= 0 ||
	    p->block_size > ATTN_MAX_BLOCK || p->n_kv_heads <= 0 || p->n_heads <= 0 ||
	    p->n_heads % p->n_kv_heads != 0)
		return -EINVAL;
	int64_t next = p->seqs[0].q_row;
	for (int s = 0; s < p->n_seqs; s++) {
		const struct attn_seq *sq = &p->seqs[s];
		if (sq->q_row != next || sq->n_new < 0 || sq->pos < 0 ||
		    (sq->n_new > 0 && sq->block_table == NULL))
			return -EINVAL;
		next += sq->n_new;
	}
	*row0 = p->seqs[0].q_row;
	*n_rows = next - *row0;
	return 0;
}

/* Row j of a cache block for kv head kvh as f32: in place for an f32 cache,
 * converted into tmp for an f16 one. */
static const float *kv_row(const struct attn_params *p, const void *cache, int64_t blk, int j,
                           int kvh, float *tmp)
{
	const int64_t kv_dim = (int64_t)p->n_kv_heads * p->head_dim;
	int64_t off = (blk * p->block_size + j) * kv_dim + (int64_t)kvh * p->head_dim;
	if (p->kv_type == DTYPE_F32)
		return (const float *)cache + off;
	cpu_f16_to_f32((const uint16_t *)cache + off, tmp, p->head_dim);
	return tmp;
}

/* One query head over its context: out = softmax(q.K^T * scale) V. */
static void attend_head(const struct attn_params *p, const struct attn_seq *sq, int64_t ctx,
                        int kvh, const float *q, float *out)
{
	const int bs = p->block_size, hd = p->head_dim;
	float sc[ATTN_MAX_BLOCK], tmp[ATTN_MAX_HEAD_DIM];
	float m = -INFINITY, l = 0.0f;

	memset(out, 0, (size_t)hd * sizeof *out);
	for (int64_t b0 = 0; b0 < ctx; b0 += bs) {
		int n = ctx - b0 < bs ? (int)(ctx - b0) : bs;
		int64_t blk = sq->block_table[b0 / bs];
		float bm = -INFINITY;
		for (int j = 0; j < n; j++) {
			sc[j] = cpu_dot_f32(q, kv_row(p, p->k_cache, blk, j, kvh, tmp), hd) * p->scale;
			bm = sc[j] > bm ? sc[j] : bm;
		}
		if (bm > m) {
			float corr = expf(m - bm); /* 0 on the first block */
			cpu_scale_f32(out, corr, hd);
			l *= corr;
			m = bm;
		}
		for (int j = 0; j < n; j++) {
			float e = expf(sc[j] - m);
			l += e;
			cpu_axpy_f32(out, e, kv_row(p, p->v_cache, blk, j, kvh, tmp), hd);
		}
	}
	if (l > 0.0f)
		cpu_scale_f32(out, 1.0f / l, hd);
}

/* ---- AVX2 path (head_dim % 8 == 0) ------------------------------------------------------
 * All query heads of one kv head at once, so each K/V row is loaded from memory once per
 * group: scores of a block for every head, the block's exponentials vectorized, then the
 * V rows accumulated 8 floats at a time with the accumulator in a register. */

AVX2 static inline __m256 load8(const void *base, int64_t off, bool f16)
{
	if (f16)
		return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)base + off)));
	return _mm256_loadu_ps((const float *)base + off);
}

AVX2 static inline float hsum8(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* exp(x) for 8 floats (Cephes-style, relative error ~2e-7; x < -87 gives 0). */
AVX2 static inline __m256 exp8(__m256 x)
{
	x = _mm256_max_ps(x, _mm256_set1_ps(-87.3365447504f));
	__m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f),
	                                            _mm256_set1_ps(0.5f)));
	x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
	x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
	__m256 y = _mm256_set1_ps(1.9875691500E-4f);
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
	y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
	y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
	__m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx),
	                                               _mm256_set1_epi32(127)), 23);
	return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* Query heads [h0, h0+G) (G <= GROUP_CHUNK) of kv head kvh for one query row. */
AVX2 static void attend_group_avx2(const struct attn_params *p, const struct attn_seq *sq,
                                   int64_t ctx, int kvh, const float *q, float *out, int G)
{
	const int bs = p->block_size, hd = p->head_dim;
	const int64_t kv_dim = (int64_t)p->n_kv_heads * hd;
	const bool f16 = p->kv_type == DTYPE_F16;
	float sc[GROUP_CHUNK][ATTN_MAX_BLOCK + 8];
	float m[GROUP_CHUNK], l[GROUP_CHUNK];

	for (int g = 0; g < G; g++) {
		m[g] = -INFINITY;
		l[g] = 0.0f;
		memset(out + (int64_t)g * hd, 0, (size_t)hd * sizeof *out);
	}
	for (int64_t b0 = 0; b0 < ctx; b0 += bs) {
		const int n = ctx - b0 < bs ? (int)(ctx - b0) : bs;
		const int64_t base = (int64_t)sq->block_table[b0 / bs] * bs * kv_dim + (int64_t)kvh * hd;
		/* scores: each K row once for all G heads */
		for (int j = 0; j < n; j++) {
			const int64_t kr = base + j * kv_dim;
			for (int g = 0; g < G; g++) {
				const float *qg = q + (int64_t)g * hd;
				__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
				int d = 0;
				for (; d + 16 <= hd; d += 16) {
					a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), load8(p->k_cache, kr + d, f16), a0);
					a1 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d + 8), load8(p->k_cache, kr + d + 8, f16), a1);
				}
				if (d < hd)
					a0 = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), load8(p->k_cache, kr + d, f16), a0);
				sc[g][j] = hsum8(_mm256_add_ps(a0, a1)) * p->scale;
			}
		}
		for (int g = 0; g < G; g++) {
			float *s = sc[g], bm = -INFINITY;
			for (int j = 0; j < n; j++)
				bm = s[j] > bm ? s[j] : bm;
			float *og = out + (int64_t)g * hd;
			if (bm > m[g]) {
				float corr = expf(m[g] - bm); /* 0 on the first block */
				__m256 c = _mm256_set1_ps(corr);
				for (int d = 0; d < hd; d += 8)
					_mm256_storeu_ps(og + d, _mm256_mul_ps(_mm256_loadu_ps(og + d), c));
				l[g] *= corr;
				m[g] = bm;
			}
			__m256 vm = _mm256_set1_ps(m[g]), vs = _mm256_setzero_ps();
			int j = 0;
			for (; j + 8 <= n; j += 8) {
				__m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
				_mm256_storeu_ps(s + j, e);
				vs = _mm256_add_ps(vs, e);
			}
			float sum = hsum8(vs);
			for (; j < n; j++) {
				s[j] = expf(s[j] - m[g]);
				sum += s[j];
			}
			l[g] += sum;
			/* out_g += sum_j s[j] * V[j], 8 output floats at a time in a register */
			for (int d = 0; d < hd; d += 8) {
				__m256 acc = _mm256_loadu_ps(og + d);
				for (int jj = 0; jj < n; jj++)
					acc = _mm256_fmadd_ps(_mm256_set1_ps(s[jj]),
					                      load8(p->v_cache, base + jj * kv_dim + d, f16), acc);
				_mm256_storeu_ps(og + d, acc);
			}
		}
	}
	for (int g = 0; g < G; g++) {
		float *og = out + (int64_t)g * hd;
		float inv = l[g] > 0.0f ? 1.0f / l[g] : 0.0f;
		for (int d = 0; d < hd; d++)
			og[d] *= inv;
	}
}

int cpu_attention(const struct attn_params *p, int n_threads)
{
	int64_t row0, n_rows;
	int rc = check(p, &row0, &n_rows);
	if (rc < 0)
		return rc;
	const int group = p->n_heads / p->n_kv_heads, hd = p->head_dim;
	const int64_t n_tasks = n_rows * p->n_kv_heads;
	int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
	/* Small calls (decode at short contexts) stay on the calling thread: a fork
	 * costs microseconds, and far more when the cores are oversubscribed. */
	double keys = 0.0; /* query-key pairs per kv head */
	for (int s = 0; s < p->n_seqs; s++)
		keys += (double)p->seqs[s].n_new * p->seqs[s].pos +
		        0.5 * p->seqs[s].n_new * (p->seqs[s].n_new + 1.0);
	if (n_tasks < 2 || (n_threads <= 0 && keys * p->n_heads * hd < ATTN_PAR_MIN))
		nt = 1;
	const bool simd = cpu_ops_use_simd() && hd % 8 == 0;

#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
	for (int64_t t = 0; t < n_tasks; t++) {
		int64_t r = row0 + t / p->n_kv_heads;
		int kvh = (int)(t % p->n_kv_heads);
		const struct attn_seq *sq = &p->seqs[seq_of_row(p, r)];
		int64_t ctx = sq->pos + (r - sq->q_row) + 1; /* causal: up to this row's position */
		if (simd) {
			for (int h = kvh * group; h < (kvh + 1) * group; h += GROUP_CHUNK) {
				int G = (kvh + 1) * group - h < GROUP_CHUNK ? (kvh + 1) * group - h
				                                            : GROUP_CHUNK;
				attend_group_avx2(p, sq, ctx, kvh, p->q + r * p->ldq + (int64_t)h * hd,
				                  p->out + r * p->ldo + (int64_t)h * hd, G);
			}
			continue;
		}
		for (int h = kvh * group; h < (kvh + 1) * group; h++)
			attend_head(p, sq, ctx, kvh, p->q + r * p->ldq + (int64_t)h * hd,
			            p->out + r * p->ldo + (int64_t)h * hd);
	}
	return 0;
}
