/* The backend interface: a table of function pointers that the models call
 * for every operator, so that one model code drives the CPU and (later) CUDA.
 *
 * A backend fills a `struct backend_ops` with labelled initialisers and sets
 * `version` to BACKEND_OPS_VERSION. Optional slots may stay NULL: the
 * dispatchers below (backend_matmul()...) check them and return -ENOTSUP, so a
 * model never calls through a NULL pointer. Required slots: alloc, free, copy,
 * sync, matmul, rms_norm, rope, silu_mul, add, attention.
 *
 * Activations are f32, row-major: a (rows, n) matrix has row stride `ld`
 * floats. Weights are `struct tensor`s in the weight's own dtype, used in
 * place. Pointers given to an op must come from the backend's alloc (or be
 * host memory for the cpu backend).
 *
 * Streams and events: ops take no stream yet (they run on the backend's
 * default stream, in call order); copy() takes one so that transfers can
 * overlap compute later. For the cpu backend everything is synchronous.
 *
 * Errors: every op returns 0 or a negative errno code (-EINVAL for bad
 * shapes, -ENOTSUP for an absent slot or unsupported dtype, -ENOMEM).
 */
#ifndef INFERD_ENGINE_BACKEND_H
#define INFERD_ENGINE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#define BACKEND_OPS_VERSION 1

struct backend;
struct backend_stream;  /* opaque, backend-defined */
struct backend_event;   /* opaque, backend-defined */

enum rope_style {
	ROPE_STYLE_NORMAL = 0, /* llama GGUF: rotate adjacent pairs (x[2i], x[2i+1]) */
	ROPE_STYLE_NEOX = 1,   /* qwen2, neox: rotate (x[i], x[i + n_rot/2]) */
};

struct rope_params {
	enum rope_style style;
	int n_rot;             /* rotated dims per head (<= head_dim, even) */
	float freq_base;       /* theta_i = pos * freq_scale * freq_base^(-2i/n_rot) / factor_i */
	float freq_scale;      /* 1 / linear scaling factor */
	const float *freq_factors; /* (n_rot/2) divisors per pair, or NULL (llama 3.1 rope_freqs) */
};

/* One sequence of a paged-attention call. Its query rows are q rows
 * [q_row, q_row + n_new) and sit at positions [pos, pos + n_new); its keys
 * and values for positions [0, pos + n_new) are in the cache already. Query i
 * attends to positions 0..pos+i (causal). */
struct attn_seq {
	int32_t q_row;
	int32_t n_new;
	int32_t pos;
	const int32_t *block_table; /* (ceil((pos+n_new)/block_size)) block ids */
};

struct attn_params {
	const float *q;        /* (n_rows, n_heads*head_dim), row stride ldq floats */
	int64_t ldq;
	float *out;            /* (n_rows, n_heads*head_dim), row stride ldo floats */
	int64_t ldo;
	const void *k_cache;   /* one layer: (n_blocks, block_size, n_kv_heads*head_dim) */
	const void *v_cache;   /* same layout as k_cache */
	enum dtype kv_type;    /* DTYPE_F32 (DTYPE_F16 optional per backend) */
	int block_size;        /* tokens per block */
	int n_heads;
	int n_kv_heads;        /* n_heads % n_kv_heads == 0 (grouped-query attention) */
	int head_dim;
	float scale;           /* usually 1/sqrt(head_dim) */
	const struct attn_seq *seqs; /* sorted by q_row, rows contiguous */
	int n_seqs;
};

struct backend_ops {
	uint32_t version;      /* BACKEND_OPS_VERSION */
	const char *name;

	/* memory */
	int (*alloc)(struct backend *b, size_t nbytes, void **out);
	void (*free)(struct backend *b, void *p); /* accepts NULL */
	int (*copy)(struct backend *b, void *dst, const void *src, size_t nbytes,
	            struct backend_stream *s); /* s NULL: default stream */
	int (*sync)(struct backend *b, struct backend_stream *s);

	/* streams and events (optional) */
	int (*stream_new)(struct backend *b, struct backend_stream **out);
	void (*stream_free)(struct backend *b, struct backend_stream *s);
	int (*event_new)(struct backend *b, struct backend_event **out);
	void (*event_free)(struct backend *b, struct backend_event *e);
	int (*event_record)(struct backend *b, struct backend_event *e, struct backend_stream *s);
	int (*event_wait)(struct backend *b, struct backend_event *e, struct backend_stream *s);

	/* y (n_tokens, w->ne[1]) = x (n_tokens, w->ne[0]) . w^T */
	int (*matmul)(struct backend *b, const struct tensor *w, const float *x, int64_t ldx,
	              int64_t n_tokens, float *y, int64_t ldy);
	/* y[r] = x[r] / rms(x[r]) * w, r < n_rows; y may equal x */
	int (*rms_norm)(struct backend *b, const float *x, int64_t ldx, const float *w, float *y,
	                int64_t ldy, int64_t n_rows, int64_t n, float eps);
	/* rotates n_heads heads of head_dim floats per row in place; pos[r] per row */
	int (*rope)(struct backend *b, float *x, int64_t ldx, int64_t n_rows, int n_heads,
	            int head_dim, const int32_t *pos, const struct rope_params *p);
	/* gate[r][i] = silu(gate[r][i]) * up[r][i] */
	int (*silu_mul)(struct backend *b, float *gate, int64_t ldg, const float *up, int64_t ldu,
	                int64_t n_rows, int64_t n);
	/* y[r][i] += x[r][i]; ldx == 0 broadcasts one row of x (a bias) */
	int (*add)(struct backend *b, float *y, int64_t ldy, const float *x, int64_t ldx,
	           int64_t n_rows, int64_t n);
	/* x[r] = softmax(x[r]) in place (optional) */
	int (*softmax)(struct backend *b, float *x, int64_t ldx, int64_t n_rows, int64_t n);
	/* paged attention over the KV cache of one layer */
	int (*attention)(struct backend *b, const struct attn_params *p);
};

/* A backend instance: the table plus its private state. */
struct backend {
	const struct backend_ops *ops;
	void *ctx;             /* backend private */
	int n_threads;         /* compute threads (cpu); 0 = default */
};

/* ---- dispatchers: check the table, then call ----------------------------------- */

/* 0 when b has a table of this version with every required slot, else -EINVAL. */
int backend_check(const struct backend *b);

int backend_alloc(struct backend *b, size_t nbytes, void **out);
void backend_free(struct backend *b, void *p); /* accepts NULL p and b */
int backend_copy(struct backend *b, void *dst, const void *src, size_t nbytes,
                 struct backend_stream *s);
int backend_sync(struct backend *b, struct backend_stream *s);
int backend_stream_new(struct backend *b, struct backend_stream **out);
void backend_stream_free(struct backend *b, struct backend_stream *s);
int backend_event_new(struct backend *b, struct backend_event **out);
void backend_event_free(struct backend *b, struct backend_event *e);
int backend_event_record(struct backend *b, struct backend_event *e, struct backend_stream *s);
int backend_event_wait(struct backend *b, struct backend_event *e, struct backend_stream *s);

int backend_matmul(struct backend *b, const struct tensor *w, const float *x, int64_t ldx,
                   int64_t n_tokens, float *y, int64_t ldy);
int backend_rms_norm(struct backend *b, const float *x, int64_t ldx, const float *w, float *y,
                     int64_t ldy, int64_t n_rows, int64_t n, float eps);
int backend_rope(struct backend *b, float *x, int64_t ldx, int64_t n_rows, int n_heads,
                 int head_dim, const int32_t *pos, const struct rope_params *p);
int backend_silu_mul(struct backend *b, float *gate, int64_t ldg, const float *up, int64_t ldu,
                     int64_t n_rows, int64_t n);
int backend_add(struct backend *b, float *y, int64_t ldy, const float *x, int64_t ldx,
                int64_t n_rows, int64_t n);
int backend_softmax(struct backend *b, float *x, int64_t ldx, int64_t n_rows, int64_t n);
int backend_attention(struct backend *b, const struct attn_params *p);

#endif
