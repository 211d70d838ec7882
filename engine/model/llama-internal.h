/* Private to engine/model/llama*.c: the model struct shared by the loader and
 * the forward pass. */
#ifndef INFERD_ENGINE_LLAMA_INTERNAL_H
#define INFERD_ENGINE_LLAMA_INTERNAL_H

#include "attention.h"
#include "llama.h"
#include "tensor.h"

struct llama_layer {
	float *attn_norm;        /* (dim) owned */
	struct tensor wq;        /* (dim, n_heads*head_dim): ne = {dim, q_dim} */
	struct tensor wk;        /* (dim, kv_dim) */
	struct tensor wv;        /* (dim, kv_dim) */
	struct tensor wo;        /* (q_dim, dim) */
	float *bq, *bk, *bv;     /* (q_dim), (kv_dim), (kv_dim) owned; qwen2 only */
	float *ffn_norm;         /* (dim) owned */
	struct tensor w_gate;    /* (dim, n_ff) */
	struct tensor w_up;      /* (dim, n_ff) */
	struct tensor w_down;    /* (n_ff, dim) */
};

struct llama_model {
	struct llama_hparams hp;
	struct backend *b;
	struct tensor tok_embd;  /* (dim, n_vocab) any dequantizable type */
	float *out_norm;         /* (dim) owned */
	struct tensor output;    /* (dim, n_vocab); token_embd when tied */
	float *rope_factors;     /* (n_rot/2) owned, or NULL */
	struct llama_layer *layers; /* (n_layers) */
	int q_dim, kv_dim;

	/* scratch for max_batch rows, from the backend */
	int max_batch;
	float *x;                /* (max_batch, dim) residual stream */
	float *xn;               /* (max_batch, dim) normed input / projection output */
	float *q, *att;          /* (max_batch, q_dim) */
	float *k, *v;            /* (max_batch, kv_dim) */
	float *gate, *up;        /* (max_batch, n_ff) */
	int32_t *pos;            /* (max_batch) host: position of each row */
	struct attn_seq *aseq;   /* (max_batch) host */

	/* weight dtype override (llama_convert.c) */
	void **owned;            /* converted matrices, freed with the model */
	int n_owned, n_converted;
};

/* Converts the F32/F16/BF16 matrices of a loaded model to `to` (llama_convert.c).
 * @return 0, -ENOTSUP (no quantizer for to), -ENOMEM; with a reason in err. */
int llama_convert_weights(struct llama_model *m, enum dtype to, char *err, size_t errlen);

#endif
