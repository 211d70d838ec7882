/* The cpu backend's function table (see backend_cpu.h). */
#include "backend_cpu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "matmul.h"
#include "ops.h"

/* ---- memory, streams, events ---------------------------------------------------------- */

#define CPU_ALIGN 64

static int cpu_alloc(struct backend *b, size_t nbytes, void **out)
{
	size_t n = (nbytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
	void *p = aligned_alloc(CPU_ALIGN, n ? n : CPU_ALIGN);
	if (p == NULL)
		return -ENOMEM;
	*out = p;
	return 0;
}

static void cpu_free(struct backend *b, void *p)
{
	free(p);
}

static int cpu_copy(struct backend *b, void *dst, const void *src, size_t nbytes,
                    struct backend_stream *s)
{
	if (nbytes && (dst == NULL || src == NULL))
		return -EINVAL;
	if (nbytes)
		memmove(dst, src, nbytes);
	return 0;
}

static int cpu_sync(struct backend *b, struct backend_stream *s)
{
	return 0;
}

/* Streams and events of a synchronous backend: distinct non-NULL handles that do nothing. */
struct backend_stream { int unused; };
struct backend_event { int unused; };

static int cpu_stream_new(struct backend *b, struct backend_stream **out)
{
	*out = calloc(1, sizeof **out);
	return *out ? 0 : -ENOMEM;
}

static void cpu_stream_free(struct backend *b, struct backend_stream *s)
{
	free(s);
}

static int cpu_event_new(struct backend *b, struct backend_event **out)
{
	*out = calloc(1, sizeof **out);
	return *out ? 0 : -ENOMEM;
}

static void cpu_event_free(struct backend *b, struct backend_event *e)
{
	free(e);
}

static int cpu_event_noop(struct backend *b, struct backend_event *e, struct backend_stream *s)
{
	return e ? 0 : -EINVAL;
}

/* ---- compute ---------------------------------------------------------------------------- */

static int cpu_mm(struct backend *b, const struct tensor *w, const float *x, int64_t ldx,
                  int64_t n_tokens, float *y, int64_t ldy)
{
	struct cpu_weight cw;
	if (w == NULL || w->data == NULL)
		return -EINVAL;
	int rc = cpu_weight_init(&cw, w->type, w->data, w->ne[0], w->ne[1]);
	if (rc < 0)
		return rc;
	return cpu_matmul(&cw, x, ldx, n_tokens, y, ldy, b->n_threads);
}

static int cpu_rms(struct backend *b, const float *x, int64_t ldx, const float *w, float *y,
                   int64_t ldy, int64_t n_rows, int64_t n, float eps)
{
	if (x == NULL || w == NULL || y == NULL || n <= 0 || n_rows < 0)
		return -EINVAL;
	cpu_rms_norm(x, ldx, w, y, ldy, n_rows, n, eps, b->n_threads);
	return 0;
}

static int cpu_rope_op(struct backend *b, float *x, int64_t ldx, int64_t n_rows, int n_heads,
                       int head_dim, const int32_t *pos, const struct rope_params *p)
{
	if (x == NULL || pos == NULL || p == NULL || p->n_rot <= 0 || p->n_rot % 2 ||
	    p->n_rot > head_dim || p->n_rot > 1024 || n_rows < 0)
		return -EINVAL;
	cpu_rope(x, ldx, n_rows, n_heads, head_dim, pos, p, b->n_threads);
	return 0;
}

static int cpu_silu(struct backend *b, float *gate, int64_t ldg, const float *up, int64_t ldu,
                    int64_t n_rows, int64_t n)
{
	if (gate == NULL || up == NULL || n_rows < 0 || n < 0)
		return -EINVAL;
	cpu_silu_mul(gate, ldg, up, ldu, n_rows, n, b->n_threads);
	return 0;
}

static int cpu_add_op(struct backend *b, float *y, int64_t ldy, const float *x, int64_t ldx,
                      int64_t n_rows, int64_t n)
{
	if (y == NULL || x == NULL || n_rows < 0 || n < 0)
		return -EINVAL;
	cpu_add(y, ldy, x, ldx, n_rows, n, b->n_threads);
	return 0;
}

static int cpu_softmax_op(struct backend *b, float *x, int64_t ldx, int64_t n_rows, int64_t n)
{
	if (x == NULL || n_rows < 0 || n <= 0)
		return -EINVAL;
	cpu_softmax(x, ldx, n_rows, n, b->n_threads);
	return 0;
}

static int cpu_attn(struct backend *b, const struct attn_params *p)
{
	return cpu_attention(p, b->n_threads);
}

const struct backend_ops backend_cpu_ops = {
	.version = BACKEND_OPS_VERSION,
	.name = "cpu",
	.alloc = cpu_alloc,
	.free = cpu_free,
	.copy = cpu_copy,
	.sync = cpu_sync,
	.stream_new = cpu_stream_new,
	.stream_free = cpu_stream_free,
	.event_new = cpu_event_new,
	.event_free = cpu_event_free,
	.event_record = cpu_event_noop,
	.event_wait = cpu_event_noop,
	.matmul = cpu_mm,
	.rms_norm = cpu_rms,
	.rope = cpu_rope_op,
	.silu_mul = cpu_silu,
	.add = cpu_add_op,
	.softmax = cpu_softmax_op,
	.attention = cpu_attn,
};

void backend_cpu_init(struct backend *b, int n_threads)
{
	b->ops = &backend_cpu_ops;
	b->ctx = NULL;
	b->n_threads = n_threads;
}
