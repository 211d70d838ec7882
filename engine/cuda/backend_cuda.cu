/* The cuda backend's function table: device memory, cuBLAS GEMMs, kernel launches. */
#include "backend_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

struct cuda_ctx {
	int device;
	cudaStream_t stream;          /* every op runs here, in call order */
	cublasHandle_t blas;
	void *scratch;                /* device: uploaded tables, f16 activations */
	size_t scratch_bytes;
	void *staging;                /* pinned host: the tables before upload */
	size_t staging_bytes;
};

static struct cuda_ctx *ctx_of(struct backend *b)
{
	return (struct cuda_ctx *)b->ctx;
}

/* Grows the device scratch (waiting for the stream first: ops in flight may read it). */
static int scratch(struct cuda_ctx *c, size_t n, void **out)
{
	if (n > c->scratch_bytes) {
		void *p = NULL;
		cudaStreamSynchronize(c->stream);
		cudaFree(c->scratch);
		c->scratch = NULL;
		c->scratch_bytes = 0;
		if (cudaMalloc(&p, n) != cudaSuccess)
			return -ENOMEM;
		c->scratch = p;
		c->scratch_bytes = n;
	}
	*out = c->scratch;
	return 0;
}

static int staging(struct cuda_ctx *c, size_t n, void **out)
{
	if (n > c->staging_bytes) {
		void *p = NULL;
		cudaStreamSynchronize(c->stream);
		cudaFreeHost(c->staging);
		c->staging = NULL;
		c->staging_bytes = 0;
		if (cudaMallocHost(&p, n) != cudaSuccess)
			return -ENOMEM;
		c->staging = p;
		c->staging_bytes = n;
	}
	*out = c->staging;
	return 0;
}

/* ---- memory, streams, events ------------------------------------------------------------- */

static int cu_alloc(struct backend *b, size_t nbytes, void **out)
{
	(void)b;
	return cudaMalloc(out, nbytes ? nbytes : 1) == cudaSuccess ? 0 : -ENOMEM;
}

static void cu_free(struct backend *b, void *p)
{
	(void)b;
	if (p)
		cudaFree(p);
}

static int cu_copy(struct backend *b, void *dst, const void *src, size_t nbytes,
                   struct backend_stream *s)
{
	cudaStream_t st = s ? (cudaStream_t)s : ctx_of(b)->stream;
	if (nbytes && (!dst || !src))
		return -EINVAL;
	return cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, st) == cudaSuccess ? 0 : -EIO;
}

static int cu_sync(struct backend *b, struct backend_stream *s)
{
	cudaStream_t st = s ? (cudaStream_t)s : ctx_of(b)->stream;
	return cudaStreamSynchronize(st) == cudaSuccess ? 0 : -EIO;
}

static int cu_stream_new(struct backend *b, struct backend_stream **out)
{
	cudaStream_t st;
	(void)b;
	if (cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) != cudaSuccess)
		return -ENOMEM;
	*out = (struct backend_stream *)st;
	return 0;
}

static void cu_stream_free(struct backend *b, struct backend_stream *s)
{
	(void)b;
	if (s)
		cudaStreamDestroy((cudaStream_t)s);
}

static int cu_event_new(struct backend *b, struct backend_event **out)
{
	cudaEvent_t e;
	(void)b;
	if (cudaEventCreateWithFlags(&e, cudaEventDisableTiming) != cudaSuccess)
		return -ENOMEM;
	*out = (struct backend_event *)e;
	return 0;
}

static void cu_event_free(struct backend *b, struct backend_event *e)
{
	(void)b;
	if (e)
		cudaEventDestroy((cudaEvent_t)e);
}

static int cu_event_record(struct backend *b, struct backend_event *e, struct backend_stream *s)
{
	cudaStream_t st = s ? (cudaStream_t)s : ctx_of(b)->stream;
	return cudaEventRecord((cudaEvent_t)e, st) == cudaSuccess ? 0 : -EIO;
}

static int cu_event_wait(struct backend *b, struct backend_event *e, struct backend_stream *s)
{
	cudaStream_t st = s ? (cudaStream_t)s : ctx_of(b)->stream;
	return cudaStreamWaitEvent(st, (cudaEvent_t)e, 0) == cudaSuccess ? 0 : -EIO;
}

/* ---- compute ----------------------------------------------------------------------------- */

/* y (n, rows) = x (n, cols) . w^T, w row-major (rows, cols): in cuBLAS's column-major terms
 * Y^T = W . X^T, i.e. op(A) = A^T with A the (cols, rows) column-major view of w. */
static int cu_matmul(struct backend *b, const struct tensor *w, const float *x, int64_t ldx,
                     int64_t n_tokens, float *y, int64_t ldy)
{
	struct cuda_ctx *c = ctx_of(b);
	const int cols = (int)w->ne[0], rows = (int)w->ne[1];
	const float one = 1.0f, zero = 0.0f;

	if (n_tokens <= 0)
		return 0;
	if (w->type == DTYPE_F32) {
		int lda = (int)(w->nb[1] / sizeof(float));
		return cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, (int)n_tokens, cols, &one,
		                   (const float *)w->data, lda, x, (int)ldx, &zero, y, (int)ldy) ==
		               CUBLAS_STATUS_SUCCESS
		       ? 0
		       : -EIO;
	}
	if (w->type == DTYPE_F16) {
		void *xh;
		int rc = scratch(c, (size_t)n_tokens * cols * sizeof(__half), &xh);
		if (rc < 0)
			return rc;
		if ((rc = cuda_launch_f32_to_f16(c->stream, x, (long)ldx, (__half *)xh, (long)n_tokens,
		                                 cols)) < 0)
			return rc;
		int lda = (int)(w->nb[1] / sizeof(__half));
		return cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, (int)n_tokens, cols, &one,
		                    w->data, CUDA_R_16F, lda, xh, CUDA_R_16F, cols, &zero, y,
		                    CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
		                    CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS
		       ? 0
		       : -EIO;
	}
	return -ENOTSUP; /* quantized weights: dequantizing kernels are not written yet */
}

static int cu_rms_norm(struct backend *b, const float *x, int64_t ldx, const float *w, float *y,
                       int64_t ldy, int64_t n_rows, int64_t n, float eps)
{
	return cuda_launch_rms_norm(ctx_of(b)->stream, x, (long)ldx, w, y, (long)ldy, (long)n_rows,
	                            (long)n, eps);
}

static int cu_rope(struct backend *b, float *x, int64_t ldx, int64_t n_rows, int n_heads,
                   int head_dim, const int32_t *pos, const struct rope_params *p)
{
	struct cuda_ctx *c = ctx_of(b);
	size_t pos_bytes = (size_t)n_rows * sizeof(int);
	size_t fac_bytes = p->freq_factors ? (size_t)(p->n_rot / 2) * sizeof(float) : 0;
	void *dev, *host;
	int rc;

	if (p->n_rot <= 0 || p->n_rot > head_dim || p->n_rot % 2)
		return -EINVAL;
	if ((rc = staging(c, pos_bytes + fac_bytes, &host)) < 0 ||
	    (rc = scratch(c, pos_bytes + fac_bytes, &dev)) < 0)
		return rc;
	cudaStreamSynchronize(c->stream); /* the staging buffer may still be read by a copy */
	memcpy(host, pos, pos_bytes);
	if (fac_bytes)
		memcpy((char *)host + pos_bytes, p->freq_factors, fac_bytes);
	if (cudaMemcpyAsync(dev, host, pos_bytes + fac_bytes, cudaMemcpyHostToDevice, c->stream) !=
	    cudaSuccess)
		return -EIO;
	return cuda_launch_rope(c->stream, x, (long)ldx, (long)n_rows, n_heads, head_dim,
	                        (const int *)dev, p->style == ROPE_STYLE_NEOX ? 1 : 0, p->n_rot,
	                        p->freq_base, p->freq_scale,
	                        fac_bytes ? (const float *)((char *)dev + pos_bytes) : NULL);
}

static int cu_silu_mul(struct backend *b, float *g, int64_t ldg, const float *u, int64_t ldu,
                       int64_t n_rows, int64_t n)
{
	return cuda_launch_silu_mul(ctx_of(b)->stream, g, (long)ldg, u, (long)ldu, (long)n_rows,
	                            (long)n);
}

static int cu_add(struct backend *b, float *y, int64_t ldy, const float *x, int64_t ldx,
                  int64_t n_rows, int64_t n)
{
	return cuda_launch_add(ctx_of(b)->stream, y, (long)ldy, x, (long)ldx, (long)n_rows, (long)n);
}

static int cu_softmax(struct backend *b, float *x, int64_t ldx, int64_t n_rows, int64_t n)
{
	return cuda_launch_softmax(ctx_of(b)->stream, x, (long)ldx, (long)n_rows, (long)n);
}

/* Uploads one row descriptor per query row and the sequences' block tables, then launches. */
static int cu_attention(struct backend *b, const struct attn_params *p)
{
	struct cuda_ctx *c = ctx_of(b);
	long n_rows = 0, n_table = 0;
	void *host, *dev;
	int rc;

	if (p->kv_type != DTYPE_F32)
		return -ENOTSUP;
	for (int s = 0; s < p->n_seqs; s++) {
		const struct attn_seq *sq = &p->seqs[s];
		n_rows += sq->n_new;
		n_table += (sq->pos + sq->n_new + p->block_size - 1) / p->block_size;
	}
	size_t rows_bytes = (size_t)n_rows * sizeof(struct cuda_attn_row);
	size_t total = rows_bytes + (size_t)n_table * sizeof(int);
	if ((rc = staging(c, total, &host)) < 0 || (rc = scratch(c, total, &dev)) < 0)
		return rc;
	cudaStreamSynchronize(c->stream);
	struct cuda_attn_row *rows = (struct cuda_attn_row *)host;
	int *tables = (int *)((char *)host + rows_bytes);
	long r = 0, t = 0;
	for (int s = 0; s < p->n_seqs; s++) {
		const struct attn_seq *sq = &p->seqs[s];
		long nb = (sq->pos + sq->n_new + p->block_size - 1) / p->block_size;
		for (int i = 0; i < sq->n_new; i++, r++)
			rows[r] = (struct cuda_attn_row){ .q_row = sq->q_row + i, .last_pos = sq->pos + i,
			                                  .table_offset = (int)t };
		memcpy(tables + t, sq->block_table, (size_t)nb * sizeof(int));
		t += nb;
	}
	if (cudaMemcpyAsync(dev, host, total, cudaMemcpyHostToDevice, c->stream) != cudaSuccess)
		return -EIO;
	return cuda_launch_attention(c->stream, p->q, (long)p->ldq, p->out, (long)p->ldo,
	                             (const float *)p->k_cache, (const float *)p->v_cache,
	                             p->block_size, p->n_heads, p->n_kv_heads, p->head_dim, p->scale,
	                             (const struct cuda_attn_row *)dev, n_rows,
	                             (const int *)((char *)dev + rows_bytes));
}

static const struct backend_ops cuda_ops = {
	.version = BACKEND_OPS_VERSION,
	.name = "cuda",
	.alloc = cu_alloc,
	.free = cu_free,
	.copy = cu_copy,
	.sync = cu_sync,
	.stream_new = cu_stream_new,
	.stream_free = cu_stream_free,
	.event_new = cu_event_new,
	.event_free = cu_event_free,
	.event_record = cu_event_record,
	.event_wait = cu_event_wait,
	.matmul = cu_matmul,
	.rms_norm = cu_rms_norm,
	.rope = cu_rope,
	.silu_mul = cu_silu_mul,
	.add = cu_add,
	.softmax = cu_softmax,
	.attention = cu_attention,
};

/* ---- lifecycle ----------------------------------------------------------------------------- */

int backend_cuda_init(struct backend *b, int device, char *err, size_t errlen)
{
	struct cuda_ctx *c = (struct cuda_ctx *)calloc(1, sizeof(*c));
	cudaError_t e;
	int n = 0;

	memset(b, 0, sizeof(*b));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	b->ctx = c;
	if ((e = cudaGetDeviceCount(&n)) != cudaSuccess || device < 0 || device >= n) {
		snprintf(err, errlen, "no CUDA device %d: %s", device,
		         e != cudaSuccess ? cudaGetErrorString(e) : "out of range");
		backend_cuda_fini(b);
		return -ENODEV;
	}
	c->device = device;
	if ((e = cudaSetDevice(device)) != cudaSuccess ||
	    (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
		snprintf(err, errlen, "CUDA device %d: %s", device, cudaGetErrorString(e));
		backend_cuda_fini(b);
		return -ENODEV;
	}
	if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS ||
	    cublasSetStream(c->blas, c->stream) != CUBLAS_STATUS_SUCCESS) {
		snprintf(err, errlen, "cuBLAS could not start on device %d", device);
		backend_cuda_fini(b);
		return -ENODEV;
	}
	b->ops = &cuda_ops;
	return 0;
}

void backend_cuda_fini(struct backend *b)
{
	struct cuda_ctx *c = (struct cuda_ctx *)b->ctx;
	if (!c)
		return;
	if (c->stream)
		cudaStreamSynchronize(c->stream);
	if (c->blas)
		cublasDestroy(c->blas);
	cudaFree(c->scratch);
	cudaFreeHost(c->staging);
	if (c->stream)
		cudaStreamDestroy(c->stream);
	free(c);
	b->ctx = NULL;
	b->ops = NULL;
}
