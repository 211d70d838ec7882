/* Dispatchers of the backend interface: every optional slot is checked here. */
#include "backend.h"

#include <errno.h>

#define SLOT(b, f) ((b) != NULL && (b)->ops != NULL && (b)->ops->f != NULL)

int backend_check(const struct backend *b)
{
	if (b == NULL || b->ops == NULL || b->ops->version != BACKEND_OPS_VERSION)
		return -EINVAL;
	const struct backend_ops *o = b->ops;
	if (!o->alloc || !o->free || !o->copy || !o->sync || !o->matmul || !o->rms_norm ||
	    !o->rope || !o->silu_mul || !o->add || !o->attention)
		return -EINVAL;
	return 0;
}

int backend_alloc(struct backend *b, size_t nbytes, void **out)
{
	return SLOT(b, alloc) ? b->ops->alloc(b, nbytes, out) : -ENOTSUP;
}

void backend_free(struct backend *b, void *p)
{
	if (p != NULL && SLOT(b, free))
		b->ops->free(b, p);
}

int backend_copy(struct backend *b, void *dst, const void *src, size_t nbytes,
                 struct backend_stream *s)
{
	return SLOT(b, copy) ? b->ops->copy(b, dst, src, nbytes, s) : -ENOTSUP;
}

int backend_sync(struct backend *b, struct backend_stream *s)
{
	return SLOT(b, sync) ? b->ops->sync(b, s) : -ENOTSUP;
}

int backend_stream_new(struct backend *b, struct backend_stream **out)
{
	return SLOT(b, stream_new) ? b->ops->stream_new(b, out) : -ENOTSUP;
}

void backend_stream_free(struct backend *b, struct backend_stream *s)
{
	if (s != NULL && SLOT(b, stream_free))
		b->ops->stream_free(b, s);
}

int backend_event_new(struct backend *b, struct backend_event **out)
{
	return SLOT(b, event_new) ? b->ops->event_new(b, out) : -ENOTSUP;
}

void backend_event_free(struct backend *b, struct backend_event *e)
{
	if (e != NULL && SLOT(b, event_free))
		b->ops->event_free(b, e);
}

int backend_event_record(struct backend *b, struct backend_event *e, struct backend_stream *s)
{
	return SLOT(b, event_record) ? b->ops->event_record(b, e, s) : -ENOTSUP;
}

int backend_event_wait(struct backend *b, struct backend_event *e, struct backend_stream *s)
{
	return SLOT(b, event_wait) ? b->ops->event_wait(b, e, s) : -ENOTSUP;
}

int backend_matmul(struct backend *b, const struct tensor *w, const float *x, int64_t ldx,
                   int64_t n_tokens, float *y, int64_t ldy)
{
	return SLOT(b, matmul) ? b->ops->matmul(b, w, x, ldx, n_tokens, y, ldy) : -ENOTSUP;
}

int backend_rms_norm(struct backend *b, const float *x, int64_t ldx, const float *w, float *y,
                     int64_t ldy, int64_t n_rows, int64_t n, float eps)
{
	return SLOT(b, rms_norm) ? b->ops->rms_norm(b, x, ldx, w, y, ldy, n_rows, n, eps)
	                         : -ENOTSUP;
}

int backend_rope(struct backend *b, float *x, int64_t ldx, int64_t n_rows, int n_heads,
                 int head_dim, const int32_t *pos, const struct rope_params *p)
{
	return SLOT(b, rope) ? b->ops->rope(b, x, ldx, n_rows, n_heads, head_dim, pos, p)
	                     : -ENOTSUP;
}

int backend_silu_mul(struct backend *b, float *gate, int64_t ldg, const float *up, int64_t ldu,
                     int64_t n_rows, int64_t n)
{
	return SLOT(b, silu_mul) ? b->ops->silu_mul(b, gate, ldg, up, ldu, n_rows, n) : -ENOTSUP;
}

int backend_add(struct backend *b, float *y, int64_t ldy, const float *x, int64_t ldx,
                int64_t n_rows, int64_t n)
{
	return SLOT(b, add) ? b->ops->add(b, y, ldy, x, ldx, n_rows, n) : -ENOTSUP;
}

int backend_softmax(struct backend *b, float *x, int64_t ldx, int64_t n_rows, int64_t n)
{
	return SLOT(b, softmax) ? b->ops->softmax(b, x, ldx, n_rows, n) : -ENOTSUP;
}

int backend_attention(struct backend *b, const struct attn_params *p)
{
	return SLOT(b, attention) ? b->ops->attention(b, p) : -ENOTSUP;
}
