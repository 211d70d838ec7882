/* conv2d through oneDNN (see conv.h): weight versions in oneDNN's preferred layouts, and a
 * cache of primitives per input shape. */
#include "conv.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <dnnl.h>

/* Nominal input size used at creation to learn the preferred weight layout. */
#define CONV_NOMINAL_HW 32

/* The weights in one oneDNN layout. Several only if shapes prefer different layouts. */
struct wver {
	dnnl_memory_desc_t md;
	void *data;            /* dnnl_memory_desc_get_size(&md) bytes */
};

/* Primitives for one input shape. Immutable once in the cache. */
struct shape_entry {
	int64_t n, h, w, oh, ow;
	dnnl_primitive_t conv;
	dnnl_primitive_t src_reorder;   /* nchw -> conv's src layout; NULL when nchw */
	dnnl_primitive_t dst_reorder;   /* conv's dst layout -> nchw; NULL when nchw */
	dnnl_memory_desc_t user_src, user_dst, src_md, dst_md;
	/* scratchpads (user mode: passed per call, so that any thread may run the primitives,
	 * several at once; oneDNN's own scratchpad wants each primitive run on the thread that
	 * made it) */
	dnnl_memory_desc_t conv_scratch, src_scratch, dst_scratch;
	int wv;                         /* index into weight versions */
};

struct conv2d {
	struct conv2d_desc d;
	unsigned flags;
	dnnl_memory_desc_t bias_md;
	float *bias;                    /* (out_ch) or NULL */
	pthread_mutex_t lock;           /* guards the two arrays below */
	struct wver *wv;
	int n_wv;
	struct shape_entry **shapes;
	int n_shapes;
};

/* ---- oneDNN engine, one per process ------------------------------------------------------ */

static pthread_once_t engine_once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine;

static void engine_make(void)
{
	if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success)
		engine = NULL;
}

static dnnl_engine_t get_engine(void)
{
	pthread_once(&engine_once, engine_make);
	return engine;
}

static int st_errno(dnnl_status_t st)
{
	switch (st) {
	case dnnl_success: return 0;
	case dnnl_out_of_memory: return -ENOMEM;
	case dnnl_invalid_arguments: return -EINVAL;
	default: return -ENOTSUP;
	}
}

/* ---- scratch buffers ----------------------------------------------------------------------
 * Scratchpads (the GEMM convolution's im2col chunks: 0.1-0.3 MB at SD sizes) and blocked
 * activation buffers (CONV2D_BLOCKED_IO: as large as the activations) come from a
 * process-wide pool, so that steady-state calls neither allocate nor fault pages in: a call takes a free buffer large enough (growing one if
 * needed) and gives it back. Buffers beyond POOL_SLOTS concurrent uses are allocated and
 * freed per call. Pool memory is kept until exit. */

#define POOL_SLOTS 8

static struct {
	void *p;
	size_t cap;
	bool busy;
} pool[POOL_SLOTS];
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

/* @return a buffer of at least bytes (64-byte aligned), or NULL. Give back with pool_give. */
static void *pool_take(size_t bytes)
{
	bytes = (bytes + 63) & ~(size_t)63;
	pthread_mutex_lock(&pool_lock);
	int fit = -1, grow = -1; /* the smallest free buffer that fits, else the largest free */
	for (int i = 0; i < POOL_SLOTS; i++) {
		if (pool[i].busy)
			continue;
		if (pool[i].cap >= bytes) {
			if (fit < 0 || pool[i].cap < pool[fit].cap)
				fit = i;
		} else if (grow < 0 || pool[i].cap > pool[grow].cap) {
			grow = i;
		}
	}
	int pick = fit >= 0 ? fit : grow;
	void *p = NULL;
	if (pick >= 0) {
		if (pool[pick].cap < bytes) {
			free(pool[pick].p);
			pool[pick].p = aligned_alloc(64, bytes);
			pool[pick].cap = pool[pick].p != NULL ? bytes : 0;
		}
		if (pool[pick].p != NULL) {
			pool[pick].busy = true;
			p = pool[pick].p;
		}
	}
	pthread_mutex_unlock(&pool_lock);
	return pick >= 0 ? p : aligned_alloc(64, bytes); /* all busy: one of its own */
}

static void pool_give(void *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&pool_lock);
	for (int i = 0; i < POOL_SLOTS; i++)
		if (pool[i].p == p && pool[i].busy) {
			pool[i].busy = false;
			p = NULL;
			break;
		}
	pthread_mutex_unlock(&pool_lock);
	free(p); /* not from the pool */
}

/* Attributes with a user-managed scratchpad. @return NULL on failure. */
static dnnl_primitive_attr_t user_scratch_attr(void)
{
	dnnl_primitive_attr_t a;
	if (dnnl_primitive_attr_create(&a) != dnnl_success)
		return NULL;
	if (dnnl_primitive_attr_set_scratchpad_mode(a, dnnl_scratchpad_mode_user) != dnnl_success) {
		dnnl_primitive_attr_destroy(a);
		return NULL;
	}
	return a;
}

/* The scratchpad descriptor of pd (a zero descriptor when none is needed). */
static void scratch_md(const_dnnl_primitive_desc_t pd, dnnl_memory_desc_t *md)
{
	const dnnl_memory_desc_t *q = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
	if (q != NULL)
		*md = *q;
	else
		memset(md, 0, sizeof *md);
}

/* ---- descriptors ----------------------------------------------------------------------- */

int conv2d_out_size(const struct conv2d *c, int64_t h, int64_t w, int64_t *oh, int64_t *ow)
{
	if (c == NULL || h <= 0 || w <= 0)
		return -EINVAL;
	const struct conv2d_desc *d = &c->d;
	int64_t eh = h + d->pad_t + d->pad_b - d->kh, ew = w + d->pad_l + d->pad_r - d->kw;
	if (eh < 0 || ew < 0)
		return -EINVAL;
	*oh = eh / d->stride_h + 1;
	*ow = ew / d->stride_w + 1;
	return 0;
}

static bool desc_ok(const struct conv2d_desc *d)
{
	return d->in_ch > 0 && d->out_ch > 0 && d->kh > 0 && d->kw > 0 && d->stride_h > 0 &&
	       d->stride_w > 0 && d->pad_t >= 0 && d->pad_l >= 0 && d->pad_b >= 0 && d->pad_r >= 0 &&
	       d->pad_t < d->kh && d->pad_b < d->kh && d->pad_l < d->kw && d->pad_r < d->kw;
}

/* Convolution primitive descriptor for input n x h x w. wmd: the weight layout wanted, or
 * NULL for any. */
static int make_pd(const struct conv2d *c, int64_t n, int64_t h, int64_t w, int64_t oh,
                   int64_t ow, const dnnl_memory_desc_t *wmd, dnnl_primitive_desc_t *pd)
{
	const struct conv2d_desc *d = &c->d;
	dnnl_format_tag_t io = (c->flags & CONV2D_BLOCKED_IO) ? dnnl_format_tag_any : dnnl_nchw;
	dnnl_dims_t sd = {n, d->in_ch, h, w}, dd = {n, d->out_ch, oh, ow};
	dnnl_dims_t wd = {d->out_ch, d->in_ch, d->kh, d->kw};
	dnnl_dims_t strides = {d->stride_h, d->stride_w};
	dnnl_dims_t pl = {d->pad_t, d->pad_l}, pr = {d->pad_b, d->pad_r};
	dnnl_memory_desc_t smd, dmd, wany;
	dnnl_convolution_desc_t cd;
	int err = st_errno(dnnl_memory_desc_init_by_tag(&smd, 4, sd, dnnl_f32, io));
	if (err == 0)
		err = st_errno(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dnnl_f32, io));
	if (err == 0 && wmd == NULL) {
		err = st_errno(dnnl_memory_desc_init_by_tag(&wany, 4, wd, dnnl_f32,
		                                            dnnl_format_tag_any));
		wmd = &wany;
	}
	if (err == 0)
		err = st_errno(dnnl_convolution_forward_desc_init(
			&cd, dnnl_forward_inference, dnnl_convolution_direct, &smd, wmd,
			c->bias != NULL ? &c->bias_md : NULL, &dmd, strides, pl, pr));
	dnnl_primitive_attr_t attr = err == 0 ? user_scratch_attr() : NULL;
	if (err == 0 && attr == NULL)
		err = -ENOMEM;
	if (err == 0)
		err = st_errno(dnnl_primitive_desc_create(pd, &cd, attr, get_engine(), NULL));
	if (attr != NULL)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* Reorder between two layouts of the same tensor, run once on the calling thread. */
static int reorder_once(const dnnl_memory_desc_t *from, void *src, const dnnl_memory_desc_t *to,
                        void *dst)
{
	dnnl_engine_t e = get_engine();
	dnnl_primitive_desc_t pd = NULL;
	dnnl_primitive_t p = NULL;
	dnnl_memory_t ms = NULL, md = NULL;
	dnnl_stream_t s = NULL;
	int err = st_errno(dnnl_reorder_primitive_desc_create(&pd, from, e, to, e, NULL));
	if (err == 0)
		err = st_errno(dnnl_primitive_create(&p, pd));
	if (err == 0)
		err = st_errno(dnnl_memory_create(&ms, from, e, src));
	if (err == 0)
		err = st_errno(dnnl_memory_create(&md, to, e, dst));
	if (err == 0)
		err = st_errno(dnnl_stream_create(&s, e, dnnl_stream_default_flags));
	if (err == 0) {
		dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, ms}, {DNNL_ARG_TO, md}};
		err = st_errno(dnnl_primitive_execute(p, s, 2, args));
	}
	if (err == 0)
		err = st_errno(dnnl_stream_wait(s));
	if (s != NULL)
		dnnl_stream_destroy(s);
	if (md != NULL)
		dnnl_memory_destroy(md);
	if (ms != NULL)
		dnnl_memory_destroy(ms);
	if (p != NULL)
		dnnl_primitive_destroy(p);
	if (pd != NULL)
		dnnl_primitive_desc_destroy(pd);
	return err;
}

/* Index of the weight version in layout md, made from version 0 if missing (lock held). */
static int weight_version(struct conv2d *c, const dnnl_memory_desc_t *md)
{
	for (int i = 0; i < c->n_wv; i++)
		if (dnnl_memory_desc_equal(&c->wv[i].md, md))
			return i;
	struct wver *nv = realloc(c->wv, (size_t)(c->n_wv + 1) * sizeof *nv);
	if (nv == NULL)
		return -ENOMEM;
	c->wv = nv;
	size_t bytes = dnnl_memory_desc_get_size(md);
	void *data = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	if (data == NULL)
		return -ENOMEM;
	int err = reorder_once(&c->wv[0].md, c->wv[0].data, md, data);
	if (err < 0) {
		free(data);
		return err;
	}
	c->wv[c->n_wv].md = *md;
	c->wv[c->n_wv].data = data;
	return c->n_wv++;
}

/* ---- creation ----------------------------------------------------------------------------- */

static int to_f32(enum dtype t, const void *src, float *dst, size_t count)
{
	switch (t) {
	case DTYPE_F32:
		memcpy(dst, src, count * sizeof *dst);
		return 0;
	case DTYPE_F16:
		for (size_t i = 0; i < count; i++)
			dst[i] = dtype_f16_to_f32(((const uint16_t *)src)[i]);
		return 0;
	case DTYPE_BF16:
		for (size_t i = 0; i < count; i++)
			dst[i] = dtype_bf16_to_f32(((const uint16_t *)src)[i]);
		return 0;
	default:
		return -ENOTSUP;
	}
}

int conv2d_new(const struct conv2d_desc *d, enum dtype wtype, const void *weight,
               const void *bias, unsigned flags, struct conv2d **out)
{
	if (d == NULL || weight == NULL || out == NULL || !desc_ok(d))
		return -EINVAL;
	if (wtype != DTYPE_F32 && wtype != DTYPE_F16 && wtype != DTYPE_BF16)
		return -ENOTSUP;
	if (get_engine() == NULL)
		return -ENOTSUP;
	size_t wcount = (size_t)d->out_ch * (size_t)d->in_ch * (size_t)d->kh * (size_t)d->kw;
	float *plain = NULL;
	dnnl_primitive_desc_t pd = NULL;
	struct conv2d *c = calloc(1, sizeof *c);
	int err = -ENOMEM;
	if (c == NULL)
		goto fail;
	c->d = *d;
	c->flags = flags;
	pthread_mutex_init(&c->lock, NULL);
	if (bias != NULL) {
		dnnl_dims_t bd = {d->out_ch};
		c->bias = malloc((size_t)d->out_ch * sizeof *c->bias);
		if (c->bias == NULL)
			goto fail;
		to_f32(wtype, bias, c->bias, (size_t)d->out_ch);
		if ((err = st_errno(dnnl_memory_desc_init_by_tag(&c->bias_md, 1, bd, dnnl_f32,
		                                                 dnnl_a))) < 0)
			goto fail;
	}
	err = -ENOMEM;
	plain = aligned_alloc(64, (wcount * sizeof *plain + 63) & ~(size_t)63);
	c->wv = calloc(1, sizeof *c->wv);
	if (plain == NULL || c->wv == NULL)
		goto fail;
	to_f32(wtype, weight, plain, wcount);
	/* version 0: the layout oneDNN wants for a nominal input (later shapes nearly always
	 * want the same one; others get their own version, reordered from this one). */
	dnnl_dims_t wd = {d->out_ch, d->in_ch, d->kh, d->kw};
	dnnl_memory_desc_t pmd;
	if ((err = st_errno(dnnl_memory_desc_init_by_tag(&pmd, 4, wd, dnnl_f32, dnnl_oihw))) < 0)
		goto fail;
	int64_t nh = d->kh > CONV_NOMINAL_HW ? d->kh : CONV_NOMINAL_HW;
	int64_t nw = d->kw > CONV_NOMINAL_HW ? d->kw : CONV_NOMINAL_HW, oh, ow;
	conv2d_out_size(c, nh, nw, &oh, &ow);
	if ((err = make_pd(c, 1, nh, nw, oh, ow, NULL, &pd)) < 0)
		goto fail;
	const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	err = -ENOTSUP;
	if (want == NULL)
		goto fail;
	if (dnnl_memory_desc_equal(want, &pmd)) {
		c->wv[0].md = pmd;
		c->wv[0].data = plain;
		plain = NULL;
	} else {
		size_t bytes = dnnl_memory_desc_get_size(want);
		err = -ENOMEM;
		c->wv[0].data = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
		if (c->wv[0].data == NULL)
			goto fail;
		c->wv[0].md = *want;
		if ((err = reorder_once(&pmd, plain, want, c->wv[0].data)) < 0)
			goto fail;
	}
	c->n_wv = 1;
	dnnl_primitive_desc_destroy(pd);
	free(plain);
	*out = c;
	return 0;
fail:
	if (pd != NULL)
		dnnl_primitive_desc_destroy(pd);
	free(plain);
	if (c != NULL && c->wv != NULL && c->n_wv == 0)
		free(c->wv[0].data);
	conv2d_free(c);
	return err;
}

static void entry_free(struct shape_entry *e)
{
	if (e == NULL)
		return;
	if (e->conv != NULL)
		dnnl_primitive_destroy(e->conv);
	if (e->src_reorder != NULL)
		dnnl_primitive_destroy(e->src_reorder);
	if (e->dst_reorder != NULL)
		dnnl_primitive_destroy(e->dst_reorder);
	free(e);
}

void conv2d_free(struct conv2d *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < c->n_shapes; i++)
		entry_free(c->shapes[i]);
	free(c->shapes);
	for (int i = 0; i < c->n_wv; i++)
		free(c->wv[i].data);
	free(c->wv);
	free(c->bias);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int conv2d_cached_shapes(struct conv2d *c)
{
	if (c == NULL)
		return 0;
	pthread_mutex_lock(&c->lock);
	int n = c->n_shapes;
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* ---- per-shape primitives ---------------------------------------------------------------- */

/* A reorder primitive from -> to and its scratchpad, or NULL (and 0) when the layouts are
 * equal. */
static int make_reorder(const dnnl_memory_desc_t *from, const dnnl_memory_desc_t *to,
                        dnnl_primitive_t *p, dnnl_memory_desc_t *scratch)
{
	*p = NULL;
	memset(scratch, 0, sizeof *scratch);
	if (dnnl_memory_desc_equal(from, to))
		return 0;
	dnnl_primitive_attr_t attr = user_scratch_attr();
	if (attr == NULL)
		return -ENOMEM;
	dnnl_primitive_desc_t pd;
	int err = st_errno(dnnl_reorder_primitive_desc_create(&pd, from, get_engine(), to,
	                                                      get_engine(), attr));
	dnnl_primitive_attr_destroy(attr);
	if (err < 0)
		return err;
	scratch_md(pd, scratch);
	err = st_errno(dnnl_primitive_create(p, pd));
	dnnl_primitive_desc_destroy(pd);
	return err;
}

static int entry_make(struct conv2d *c, int64_t n, int64_t h, int64_t w, struct shape_entry **out)
{
	dnnl_primitive_desc_t pd = NULL;
	struct shape_entry *e = calloc(1, sizeof *e);
	int err = -ENOMEM;
	if (e == NULL)
		goto done;
	e->n = n, e->h = h, e->w = w;
	if ((err = conv2d_out_size(c, h, w, &e->oh, &e->ow)) < 0)
		goto done;
	if ((err = make_pd(c, n, h, w, e->oh, e->ow, NULL, &pd)) < 0)
		goto done;
	const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	err = -ENOTSUP;
	if (wmd == NULL)
		goto done;
	if ((e->wv = weight_version(c, wmd)) < 0) {
		err = e->wv;
		goto done;
	}
	e->src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
	e->dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	dnnl_dims_t sd = {n, c->d.in_ch, h, w}, dd = {n, c->d.out_ch, e->oh, e->ow};
	if ((err = st_errno(dnnl_memory_desc_init_by_tag(&e->user_src, 4, sd, dnnl_f32,
	                                                 dnnl_nchw))) < 0 ||
	    (err = st_errno(dnnl_memory_desc_init_by_tag(&e->user_dst, 4, dd, dnnl_f32,
	                                                 dnnl_nchw))) < 0)
		goto done;
	scratch_md(pd, &e->conv_scratch);
	if ((err = st_errno(dnnl_primitive_create(&e->conv, pd))) < 0 ||
	    (err = make_reorder(&e->user_src, &e->src_md, &e->src_reorder, &e->src_scratch)) < 0 ||
	    (err = make_reorder(&e->dst_md, &e->user_dst, &e->dst_reorder, &e->dst_scratch)) < 0)
		goto done;
	*out = e;
	e = NULL;
	err = 0;
done:
	if (pd != NULL)
		dnnl_primitive_desc_destroy(pd);
	entry_free(e);
	return err;
}

/* The cached entry for (n, h, w), made on first use. */
static int entry_get(struct conv2d *c, int64_t n, int64_t h, int64_t w, struct shape_entry **out,
                     struct wver *wv)
{
	int err = 0;
	pthread_mutex_lock(&c->lock);
	struct shape_entry *e = NULL;
	for (int i = 0; i < c->n_shapes && e == NULL; i++)
		if (c->shapes[i]->n == n && c->shapes[i]->h == h && c->shapes[i]->w == w)
			e = c->shapes[i];
	if (e == NULL) {
		struct shape_entry **ns = realloc(c->shapes, (size_t)(c->n_shapes + 1) * sizeof *ns);
		if (ns == NULL) {
			err = -ENOMEM;
			goto unlock;
		}
		c->shapes = ns;
		if ((err = entry_make(c, n, h, w, &e)) < 0)
			goto unlock;
		c->shapes[c->n_shapes++] = e;
	}
	*out = e;
	*wv = c->wv[e->wv]; /* copied: c->wv may move when another shape adds a version */
unlock:
	pthread_mutex_unlock(&c->lock);
	return err;
}

/* ---- execution --------------------------------------------------------------------------- */

/* Runs p with args plus, when md is not empty, a scratchpad of md from the pool. */
static int exec_with_scratch(dnnl_primitive_t p, dnnl_stream_t s, int nargs,
                             dnnl_exec_arg_t *args, const dnnl_memory_desc_t *md)
{
	size_t bytes = dnnl_memory_desc_get_size(md);
	if (bytes == 0)
		return st_errno(dnnl_primitive_execute(p, s, nargs, args));
	void *buf = pool_take(bytes);
	dnnl_memory_t m = NULL;
	int err = buf == NULL ? -ENOMEM : st_errno(dnnl_memory_create(&m, md, get_engine(), buf));
	if (err == 0) {
		args[nargs] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m};
		err = st_errno(dnnl_primitive_execute(p, s, nargs + 1, args));
	}
	if (err == 0)
		err = st_errno(dnnl_stream_wait(s)); /* before the scratchpad goes back */
	if (m != NULL)
		dnnl_memory_destroy(m);
	pool_give(buf);
	return err;
}

int conv2d_run(struct conv2d *c, const float *x, int64_t n, int64_t h, int64_t w, float *y)
{
	if (c == NULL || x == NULL || y == NULL || n <= 0 || h <= 0 || w <= 0)
		return -EINVAL;
	struct shape_entry *e;
	struct wver wv;
	int err = entry_get(c, n, h, w, &e, &wv);
	if (err < 0)
		return err;

	dnnl_engine_t eng = get_engine();
	dnnl_stream_t s = NULL;
	dnnl_memory_t m_usrc = NULL, m_udst = NULL, m_src = NULL, m_dst = NULL, m_w = NULL,
		      m_b = NULL;
	void *sbuf = NULL, *dbuf = NULL;
	if ((err = st_errno(dnnl_stream_create(&s, eng, dnnl_stream_default_flags))) < 0)
		goto done;
	if ((err = st_errno(dnnl_memory_create(&m_usrc, &e->user_src, eng, (void *)x))) < 0 ||
	    (err = st_errno(dnnl_memory_create(&m_udst, &e->user_dst, eng, y))) < 0 ||
	    (err = st_errno(dnnl_memory_create(&m_w, &wv.md, eng, wv.data))) < 0)
		goto done;
	if (c->bias != NULL &&
	    (err = st_errno(dnnl_memory_create(&m_b, &c->bias_md, eng, c->bias))) < 0)
		goto done;
	/* activations in a blocked layout (CONV2D_BLOCKED_IO): pool buffers of this call */
	if (e->src_reorder != NULL) {
		err = -ENOMEM;
		if ((sbuf = pool_take(dnnl_memory_desc_get_size(&e->src_md))) == NULL)
			goto done;
		if ((err = st_errno(dnnl_memory_create(&m_src, &e->src_md, eng, sbuf))) < 0)
			goto done;
		dnnl_exec_arg_t a[3] = {{DNNL_ARG_FROM, m_usrc}, {DNNL_ARG_TO, m_src}};
		if ((err = exec_with_scratch(e->src_reorder, s, 2, a, &e->src_scratch)) < 0)
			goto done;
	}
	if (e->dst_reorder != NULL) {
		err = -ENOMEM;
		if ((dbuf = pool_take(dnnl_memory_desc_get_size(&e->dst_md))) == NULL)
			goto done;
		if ((err = st_errno(dnnl_memory_create(&m_dst, &e->dst_md, eng, dbuf))) < 0)
			goto done;
	}
	dnnl_exec_arg_t args[5] = {
		{DNNL_ARG_SRC, m_src != NULL ? m_src : m_usrc},
		{DNNL_ARG_WEIGHTS, m_w},
		{DNNL_ARG_DST, m_dst != NULL ? m_dst : m_udst},
		{DNNL_ARG_BIAS, m_b},
	};
	if ((err = exec_with_scratch(e->conv, s, m_b != NULL ? 4 : 3, args, &e->conv_scratch)) < 0)
		goto done;
	if (e->dst_reorder != NULL) {
		dnnl_exec_arg_t a[3] = {{DNNL_ARG_FROM, m_dst}, {DNNL_ARG_TO, m_udst}};
		if ((err = exec_with_scratch(e->dst_reorder, s, 2, a, &e->dst_scratch)) < 0)
			goto done;
	}
	err = st_errno(dnnl_stream_wait(s));
done:
	if (s != NULL)
		dnnl_stream_wait(s);
	dnnl_memory_t ms[] = {m_usrc, m_udst, m_src, m_dst, m_w, m_b};
	for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
		if (ms[i] != NULL)
			dnnl_memory_destroy(ms[i]);
	if (s != NULL)
		dnnl_stream_destroy(s);
	pool_give(sbuf);
	pool_give(dbuf);
	return err;
}
