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

/* Writes the rows' K and V into their cache slots (converted to f16 on the host
 * for an f16 cache: the cpu backend's memory is host memory). */
static int store_kv(struct llama_model *m, struct kv_cache *kv, int l,
                    const struct fwd_seq *seqs, int n_seqs)
{
	const struct kv_cache_params *kp = kv_cache_params(kv);
	const int bs = kp->block_size, kvd = m->kv_dim;
	const size_t es = kv_cache_elem_size(kp->type), rb = (size_t)kvd * es;
	char *kc = kv_cache_k(kv, l), *vc = kv_cache_v(kv, l);
	int64_t r = 0;
	int rc = 0;
	for (int s = 0; s < n_seqs; s++) {
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

static int layer_forward(struct llama_model *m, struct kv_cache *kv, int l, int64_t T,
                         const struct fwd_seq *seqs, int n_seqs)
{
	const struct llama_hparams *hp = &m->hp;
	const struct llama_layer *L = &m->layers[l];
	struct backend *b = m->b;
	const int dim = hp->dim, qd = m->q_dim, kvd = m->kv_dim, ff = hp->n_ff;
	int rc;

#define TRY(call) do { if ((rc = (call)) < 0) return rc; } while (0)
	/* attention block */
	TRY(backend_rms_norm(b, m->x, dim, L->attn_norm, m->xn, dim, T, dim, hp->norm_eps));
	TRY(backend_matmul(b, &L->wq, m->xn, dim, T, m->q, qd));
	TRY(backend_matmul(b, &L->wk, m->xn, dim, T, m->k, kvd));
	TRY(backend_matmul(b, &L->wv, m->xn, dim, T, m->v, kvd));
	if (hp->qkv_bias) {
		TRY(backend_add(b, m->q, qd, L->bq, 0, T, qd));
		TRY(backend_add(b, m->k, kvd, L->bk, 0, T, kvd));
		TRY(backend_add(b, m->v, kvd, L->bv, 0, T, kvd));
	}
	TRY(backend_rope(b, m->q, qd, T, hp->n_heads, hp->head_dim, m->pos, &hp->rope));
	TRY(backend_rope(b, m->k, kvd, T, hp->n_kv_heads, hp->head_dim, m->pos, &hp->rope));
	TRY(store_kv(m, kv, l, seqs, n_seqs));
	struct attn_params ap = {
		.q = m->q, .ldq = qd, .out = m->att, .ldo = qd,
		.k_cache = kv_cache_k(kv, l), .v_cache = kv_cache_v(kv, l),
		.kv_type = kv_cache_params(kv)->type,
		.block_size = kv_cache_params(kv)->block_size, .n_heads = hp->n_heads,
		.n_kv_heads = hp->n_kv_heads, .head_dim = hp->head_dim,
		.scale = 1.0f / sqrtf((float)hp->head_dim), .seqs = m->aseq, .n_seqs = n_seqs,
	};
	TRY(backend_attention(b, &ap));
	TRY(backend_matmul(b, &L->wo, m->att, qd, T, m->xn, dim));
	TRY(backend_add(b, m->x, dim, m->xn, dim, T, dim));

	/* feed-forward block */
	TRY(backend_rms_norm(b, m->x, dim, L->ffn_norm, m->xn, dim, T, dim, hp->norm_eps));
	TRY(backend_matmul(b, &L->w_gate, m->xn, dim, T, m->gate, ff));
	TRY(backend_matmul(b, &L->w_up, m->xn, dim, T, m->up, ff));
	TRY(backend_silu_mul(b, m->gate, ff, m->up, ff, T, ff));
	TRY(backend_matmul(b, &L->w_down, m->gate, ff, T, m->xn, dim));
	TRY(backend_add(b, m->x, dim, m->xn, dim, T, dim));
#undef TRY
	return 0;
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
	for (int l = 0; l < m->hp.n_layers; l++)
		if ((rc = layer_forward(m, kv, l, T, seqs, n_seqs)) < 0)
			return rc;
	if (n_out == 0)
		return 0;

	/* gather the rows that want logits into xn, in order */
	const int dim = m->hp.dim;
	int64_t r = 0, o = 0;
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
