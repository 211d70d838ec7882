/* Paged attention over an f32 or f16 KV cache (see attention.h). */
#include "attention.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <omp.h>

#include "ops.h"

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

int cpu_attention(const struct attn_params *p, int n_threads)
{
	int64_t row0, n_rows;
	int rc = check(p, &row0, &n_rows);
	if (rc < 0)
		return rc;
	const int group = p->n_heads / p->n_kv_heads, hd = p->head_dim;
	const int64_t n_tasks = n_rows * p->n_kv_heads;
	int nt = n_threads > 0 ? n_threads : omp_get_max_threads();
	if (n_tasks < 2)
		nt = 1;

#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
	for (int64_t t = 0; t < n_tasks; t++) {
		int64_t r = row0 + t / p->n_kv_heads;
		int kvh = (int)(t % p->n_kv_heads);
		const struct attn_seq *sq = &p->seqs[seq_of_row(p, r)];
		int64_t ctx = sq->pos + (r - sq->q_row) + 1; /* causal: up to this row's position */
		for (int h = kvh * group; h < (kvh + 1) * group; h++)
			attend_head(p, sq, ctx, kvh, p->q + r * p->ldq + (int64_t)h * hd,
			            p->out + r * p->ldo + (int64_t)h * hd);
	}
	return 0;
}
