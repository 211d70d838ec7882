/* The batched forward pass of llama / qwen2 (see forward.h).
 *
 * Per layer, for the T stacked rows of the batch:
 *   xn = rmsnorm(x) * attn_norm
 *   q, k, v = xn Wq^T (+bq), xn Wk^T (+bk), xn Wv^T (+bv)      three matmuls of T rows
 *   rope(q, k) at each row's position; k, v -> the rows' cache slots
 *   att = paged attention per sequence                         memory-bound part
 *   x += att Wo^T
 *   xn = rmsnorm(x) * ffn_norm
 *   x += (silu(xn Wg^T) * (xn Wu^T)) Wd^T
 * then the rows that want logits are gathered, normed and multiplied by the
 * output matrix. Nearly all time goes to the matmuls (weights read once per
 * call for all T rows); attention grows with the context.
 */
#include "forward.h"
#include "llama-internal.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <string.h>

int64_t fwd_n_logits(const struct fwd_seq *seqs, int n_seqs)
{
	int64_t n = 0;
	for (int s = 0; s < n_seqs; s++)
		n += seqs[s].logits == FWD_LOGITS_ALL ? seqs[s].n_tokens
		     : seqs[s].logits == FWD_LOGITS_LAST ? 1 : 0;
	return n;
}

static int check_batch(const struct llama_model *m, struct kv_cache *kv,
                       const struct fwd_seq *seqs, int n_seqs, int64_t *n_rows)
{
	const struct kv_cache_params *kp = kv_cache_params(kv);
	if (kp->n_layers != m->hp.n_layers || kp->n_kv_heads != m->hp.n_kv_heads ||
	    kp->head_dim != m->hp.head_dim ||
	    (kp->type != DTYPE_F32 && kp->type != DTYPE_F16) || n_seqs < 1 || seqs == NULL)
		return -EINVAL;
	int64_t T = 0;
	for (int s = 0; s < n_seqs; s++) {
		const struct fwd_seq *sq = &seqs[s];
		if (sq->n_tokens < 1 || sq->pos < 0 || sq->tokens == NULL || sq->block_table == NULL ||
		    (int64_t)sq->pos + sq->n_tokens > (int64_t)sq->n_blocks * kp->block_size)
			return -EINVAL;
		if (sq->logits < FWD_LOGITS_NONE || sq->logits > FWD_LOGITS_ALL)
			return -EINVAL;
		for (int i = 0; i < sq->n_tokens; i++)
			if (sq->tokens[i] < 0 || sq->tokens[i] >= m->hp.n_vocab)
				return -EINVAL;
		int64_t used = ((int64_t)sq->pos + sq->n_tokens + kp->block_size - 1) / kp->block_size;
		for (int64_t b = 0; b < used; b++)
			if (sq->block_table[b] < 0 || sq->block_table[b] >= kp->n_blocks)
				return -EINVAL;
		T += sq->n_tokens;
	}
	if (T > m->max_batch)
		return -E2BIG;
	*n_rows = T;
	return 0;
}

/* Embedding rows (dequantized from token_embd) and the per-row bookkeeping. */
static int embed(struct llama_model *m, const struct fwd_seq *seqs, int n_seqs)
{
	const int dim = m->hp.dim;
	int64_t r = 0;
	for (int s = 0; s < n_seqs; s++) {
		const struct fwd_seq *sq = &seqs[s];
		m->aseq[s] = (struct attn_seq){ .q_row = (int32_t)r, .n_new = sq->n_tokens,
		                                .pos = sq->pos, .block_table = sq->block_table };
		for (int i = 0; i < sq->n_tokens; i++, r++) {
			const char *row = (const char *)m->tok_embd.data +
			                  (size_t)sq->tokens[i] * m->tok_embd.nb[1];
			int rc = dtype_dequant_row(m->tok_embd.type, row, m->x + r * dim, dim);
			if (rc < 0)
				return rc;
			m->pos[r] = sq->pos + i;
		}
	}
	return 0;
}

/* A lane: a contiguous range of the batch's rows and the sequences they belong to. The whole
 * batch is one lane; nano-batching runs two lanes side by side. */
struct lane {
	int64_t r0;                  /* first row */
	int64_t T;                   /* rows */
	const struct fwd_seq *seqs;
	int n_seqs;
	struct attn_seq *aseq;       /* q_row relative to r0 */
};

/* Writes the rows' K and V into their cache slots (converted to f16 on the host
 * for an f16 cache: the cpu backend's memory is host memory). */
static int store_kv(struct llama_model *m, struct kv_cache *kv, int l, const struct lane *ln)
{
	const struct kv_cache_params *kp = kv_cache_params(kv);
	const int bs = kp->block_size, kvd = m->kv_dim;
	const size_t es = kv_cache_elem_size(kp->type), rb = (size_t)kvd * es;
	char *kc = kv_cache_k(kv, l), *vc = kv_cache_v(kv, l);
	const struct fwd_seq *seqs = ln->seqs;
	int64_t r = ln->r0;
	int rc = 0;
	for (int s = 0; s < ln->n_seqs; s++) {
		for (int i = 0; i < seqs[s].n_tokens && rc == 0; i++, r++) {
			int64_t p = m->pos[r];
			size_t off = (size_t)((int64_t)seqs[s].block_table[p / bs] * bs + p % bs) * rb;
			if (kp->type == DTYPE_F32) {
				rc = backend_copy(m->b, kc + off, m->k + r * kvd, rb, NULL);
				if (rc == 0)
					rc = backend_copy(m->b, vc + off, m->v + r * kvd, rb, NULL);
			} else {
				rc = dtype_quant_row(kp->type, m->k + r * kvd, kc + off, kvd);
				if (rc == 0)
					rc = dtype_quant_row(kp->type, m->v + r * kvd, vc + off, kvd);
			}
		}
	}
	return rc;
}

#define TRY(call) do { if ((rc = (call)) < 0) return rc; } while (0)

/* Compute-bound part before attention: norm, Q/K/V projections, RoPE, K/V into the cache. */
static int layer_pre(struct llama_model *m, struct kv_cache *kv, int l, const struct lane *ln)
{
	const struct llama_hparams *hp = &m->hp;
	const struct llama_layer *L = &m->layers[l];
	struct backend *b = m->b;
	const int dim = hp->dim, qd = m->q_dim, kvd = m->kv_dim;
	const int64_t T = ln->T, r0 = ln->r0;
	float *x = m->x + r0 * dim, *xn = m->xn + r0 * dim;
	float *q = m->q + r0 * qd, *k = m->k + r0 * kvd, *v = m->v + r0 * kvd;
	int rc;

	TRY(backend_rms_norm(b, x, dim, L->attn_norm, xn, dim, T, dim, hp->norm_eps));
	TRY(backend_matmul(b, &L->wq, xn, dim, T, q, qd));
	TRY(backend_matmul(b, &L->wk, xn, dim, T, k, kvd));
	TRY(backend_matmul(b, &L->wv, xn, dim, T, v, kvd));
	if (hp->qkv_bias) {
		TRY(backend_add(b, q, qd, L->bq, 0, T, qd));
		TRY(backend_add(b, k, kvd, L->bk, 0, T, kvd));
		TRY(backend_add(b, v, kvd, L->bv, 0, T, kvd));
	}
	TRY(backend_rope(b, q, qd, T, hp->n_heads, hp->head_dim, m->pos + r0, &hp->rope));
	TRY(backend_rope(b, k, kvd, T, hp->n_kv_heads, hp->head_dim, m->pos + r0, &hp->rope));
	return store_kv(m, kv, l, ln);
}

/* Memory-bound part: attention over each sequence's paged context. */
static int layer_attn(struct llama_model *m, struct kv_cache *kv, int l, const struct lane *ln)
{
	const struct llama_hparams *hp = &m->hp;
	const int qd = m->q_dim;
	struct attn_params ap = {
		.q = m->q + ln->r0 * qd, .ldq = qd, .out = m->att + ln->r0 * qd, .ldo = qd,
		.k_cache = kv_cache_k(kv, l), .v_cache = kv_cache_v(kv, l),
		.kv_type = kv_cache_params(kv)->type,
		.block_size = kv_cache_params(kv)->block_size, .n_heads = hp->n_heads,
		.n_kv_heads = hp->n_kv_heads, .head_dim = hp->head_dim,
		.scale = 1.0f / sqrtf((float)hp->head_dim), .seqs = ln->aseq, .n_seqs = ln->n_seqs,
	};
	return backend_attention(m->b, &ap);
}

/* Compute-bound part after attention: output projection and the feed-forward block. */
static int layer_post(struct llama_model *m, int l, const struct lane *ln)
{
	const struct llama_hparams *hp = &m->hp;
	const struct llama_layer *L = &m->layers[l];
	struct backend *b = m->b;
	const int dim = hp->dim, qd = m->q_dim, ff = hp->n_ff;
	const int64_t T = ln->T, r0 = ln->r0;
	float *x = m->x + r0 * dim, *xn = m->xn + r0 * dim, *att = m->att + r0 * qd;
	float *gate = m->gate + r0 * ff, *up = m->up + r0 * ff;
	int rc;

	TRY(backend_matmul(b, &L->wo, att, qd, T, xn, dim));
	TRY(backend_add(b, x, dim, xn, dim, T, dim));
	TRY(backend_rms_norm(b, x, dim, L->ffn_norm, xn, dim, T, dim, hp->norm_eps));
	TRY(backend_matmul(b, &L->w_gate, xn, dim, T, gate, ff));
	TRY(backend_matmul(b, &L->w_up, xn, dim, T, up, ff));
	TRY(backend_silu_mul(b, gate, ff, up, ff, T, ff));
	TRY(backend_matmul(b, &L->w_down, gate, ff, T, xn, dim));
	TRY(backend_add(b, x, dim, xn, dim, T, dim));
	return 0;
}
#undef TRY

static int layer_forward(struct llama_model *m, struct kv_cache *kv, int l,
                         const struct lane *ln)
{
	int rc = layer_pre(m, kv, l, ln);
	if (rc == 0)
		rc = layer_attn(m, kv, l, ln);
	if (rc == 0)
		rc = layer_post(m, l, ln);
	return rc;
}

/* Rows that want logits, gathered, normed and multiplied by the output matrix. */
static int output_logits(struct llama_model *m, const struct fwd_seq *seqs, int n_seqs,
                         int64_t n_out, float *logits)
{
	const int dim = m->hp.dim;
	int64_t r = 0, o = 0;
	int rc;
	for (int s = 0; s < n_seqs; s++) {
		const struct fwd_seq *sq = &seqs[s];
		int64_t first = sq->logits == FWD_LOGITS_ALL ? 0
		                : sq->logits == FWD_LOGITS_LAST ? sq->n_tokens - 1 : sq->n_tokens;
		for (int64_t i = first; i < sq->n_tokens; i++, o++)
			if ((rc = backend_copy(m->b, m->xn + o * dim, m->x + (r + i) * dim,
			                       (size_t)dim * sizeof(float), NULL)) < 0)
				return rc;
		r += sq->n_tokens;
	}
	if ((rc = backend_rms_norm(m->b, m->xn, dim, m->out_norm, m->xn, dim, n_out, dim,
	                           m->hp.norm_eps)) < 0)
		return rc;
	return backend_matmul(m->b, &m->output, m->xn, dim, n_out, logits, m->hp.n_vocab);
}

int llama_forward(struct llama_model *m, struct kv_cache *kv, const struct fwd_seq *seqs,
                  int n_seqs, float *logits)
{
	int64_t T;
	int rc;

	if (m == NULL || kv == NULL)
		return -EINVAL;
	if ((rc = check_batch(m, kv, seqs, n_seqs, &T)) < 0)
		return rc;
	int64_t n_out = fwd_n_logits(seqs, n_seqs);
	if (n_out > 0 && logits == NULL)
		return -EINVAL;
	if ((rc = embed(m, seqs, n_seqs)) < 0)
		return rc;
	struct lane all = { .r0 = 0, .T = T, .seqs = seqs, .n_seqs = n_seqs, .aseq = m->aseq };
	for (int l = 0; l < m->hp.n_layers; l++)
		if ((rc = layer_forward(m, kv, l, &all)) < 0)
			return rc;
	return n_out ? output_logits(m, seqs, n_seqs, n_out, logits) : 0;
}

/* ---- nano-batching ------------------------------------------------------------------------
 * Two nano-batches (lanes) of the same iteration run side by side on two thread groups, offset
 * by half a layer, so that one lane's memory-bound attention runs while the other lane's
 * compute-bound projections and feed-forward run (NanoFlow's operation-level pipeline). Each
 * lane's steps alternate compute / memory:
 *   C0 = pre(0), M0 = attn(0), C1 = post(0) + pre(1), ..., M(L-1) = attn(L-1), CL = post(L-1)
 * and lane 1 runs step s in phase s + 1, lane 0 in phase s, with a barrier after each phase:
 * in every phase one lane computes while the other streams its KV cache. The price: each lane
 * reads the weights once, so the split pays off when the batch is large enough for the
 * projections to stay compute-bound in halves. */

static int lane_step(struct llama_model *m, struct kv_cache *kv, const struct lane *ln, int step)
{
	const int L = m->hp.n_layers;
	int rc = 0;
	if (step % 2 == 1)
		return layer_attn(m, kv, step / 2, ln);
	int l = step / 2;
	if (l > 0)
		rc = layer_post(m, l - 1, ln);
	if (rc == 0 && l < L)
		rc = layer_pre(m, kv, l, ln);
	return rc;
}

int llama_forward_nano(struct llama_model *m, struct kv_cache *kv, const struct fwd_seq *seqs,
                       int n_seqs, float *logits, const struct fwd_nano *nano)
{
	int64_t T;
	int rc;

	if (m == NULL || kv == NULL || nano == NULL)
		return -EINVAL;
	if ((rc = check_batch(m, kv, seqs, n_seqs, &T)) < 0)
		return rc;
	int64_t n_out = fwd_n_logits(seqs, n_seqs);
	if (n_out > 0 && logits == NULL)
		return -EINVAL;
	/* Split by sequences so that lane 0 holds about split x T rows; one lane: no split. */
	int k = 0;
	int64_t T0 = 0;
	while (k < n_seqs - 1 && (double)(T0 + seqs[k].n_tokens) <= nano->split * (double)T) {
		T0 += seqs[k].n_tokens;
		k++;
	}
	if (n_seqs < 2 || T < nano->min_tokens)
		return llama_forward(m, kv, seqs, n_seqs, logits);
	if (k == 0) { /* the first sequence alone is over the share: it is lane 0 */
		T0 = seqs[0].n_tokens;
		k = 1;
	}
	if ((rc = embed(m, seqs, n_seqs)) < 0)
		return rc;
	struct lane lanes[2] = {
		{ .r0 = 0, .T = T0, .seqs = seqs, .n_seqs = k, .aseq = m->aseq },
		{ .r0 = T0, .T = T - T0, .seqs = seqs + k, .n_seqs = n_seqs - k, .aseq = m->aseq + k },
	};
	for (int s = k; s < n_seqs; s++)
		m->aseq[s].q_row -= (int32_t)T0;
	const int steps = 2 * m->hp.n_layers + 1;
	int err[2] = { 0, 0 };
	int levels = omp_get_max_active_levels();
	if (nano->threads[0] > 1 || nano->threads[1] > 1)
		omp_set_max_active_levels(2);
#pragma omp parallel num_threads(2)
	{
		int me = omp_get_thread_num();
		if (omp_get_num_threads() == 2) {
			if (nano->threads[me] > 0)
				omp_set_num_threads(nano->threads[me]);
			for (int phase = 0; phase <= steps; phase++) {
				int step = phase - me;
				if (step >= 0 && step < steps && !err[me])
					err[me] = lane_step(m, kv, &lanes[me], step);
#pragma omp barrier
			}
		} else if (me == 0) {
			/* No second thread (nested region or a 1-thread limit): run the lanes in turn. */
			for (int i = 0; i < 2 && !err[0]; i++)
				for (int step = 0; step < steps && !err[0]; step++)
					err[0] = lane_step(m, kv, &lanes[i], step);
		}
	}
	omp_set_max_active_levels(levels);
	for (int s = k; s < n_seqs; s++)
		m->aseq[s].q_row += (int32_t)T0;
	if (err[0] < 0 || err[1] < 0)
		return err[0] < 0 ? err[0] : err[1];
	return n_out ? output_logits(m, seqs, n_seqs, n_out, logits) : 0;
}
