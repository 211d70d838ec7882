/* The VAE's blocks over the rotating scratch buffers of struct vae_run (vae-internal.h):
 * resnets, the mid-block attention, convolutions and the 2x upsampler. Each reads the live
 * tensor bufs[cur], writes its intermediates into the two other buffers and leaves its
 * result in one of the three. Most of the time is spent in the convolutions (oneDNN). */
#include "vae-internal.h"

#include <errno.h>

#include "diffusion_ops.h"

int vae_conv_run(struct vae_run *r, struct conv2d *c, int out_ch)
{
	int64_t oh, ow;
	int rc = conv2d_out_size(c, r->h, r->w, &oh, &ow);
	if (rc != 0)
		return rc;
	const int dst = vae_run_other(r, 1);
	rc = conv2d_run(c, vae_run_x(r), r->n, r->h, r->w, r->bufs[dst]);
	if (rc != 0)
		return rc;
	r->cur = dst;
	r->c = out_ch;
	r->h = oh;
	r->w = ow;
	return 0;
}

int vae_norm_silu_run(struct vae_run *r, const struct vae_norm *nm)
{
	float *x = vae_run_x(r);
	return dops_group_norm(x, x, r->n, r->c, r->h * r->w, r->groups, nm->w, nm->b, VAE_EPS,
	                       true, r->nt);
}

/* x -> x' = shortcut(x) + conv2(silu(gn2(conv1(silu(gn1(x)))))), with X the live buffer and
 * A, B the others:  A = silu(gn1(X)); B = conv1(A); B = silu(gn2(B)); A = conv2(B);
 * then A += X, or B = shortcut(X), A += B. The result is in A. */
int vae_resnet_run(struct vae_run *r, const struct vae_resnet *rs)
{
	const int64_t n = r->n, hw = r->h * r->w;
	float *X = vae_run_x(r), *A = r->bufs[vae_run_other(r, 1)], *B = r->bufs[vae_run_other(r, 2)];
	int rc;
	if (r->c != rs->cin)
		return -EINVAL;
	if ((rc = dops_group_norm(X, A, n, rs->cin, hw, r->groups, rs->n1.w, rs->n1.b, VAE_EPS, true,
	                          r->nt)) != 0 ||
	    (rc = conv2d_run(rs->conv1, A, n, r->h, r->w, B)) != 0 ||
	    (rc = dops_group_norm(B, B, n, rs->cout, hw, r->groups, rs->n2.w, rs->n2.b, VAE_EPS,
	                          true, r->nt)) != 0 ||
	    (rc = conv2d_run(rs->conv2, B, n, r->h, r->w, A)) != 0)
		return rc;
	if (rs->shortcut != NULL) {
		if ((rc = conv2d_run(rs->shortcut, X, n, r->h, r->w, B)) != 0)
			return rc;
		X = B;
	}
	if ((rc = dops_add(A, X, n * rs->cout * hw, r->nt)) != 0)
		return rc;
	r->cur = vae_run_other(r, 1);
	r->c = rs->cout;
	return 0;
}

/* y (rows, ld) += b (cols) on every row. */
static void add_row_bias(float *y, int64_t rows, int64_t cols, const float *b, int nt)
{
#pragma omp parallel for num_threads(nt) if (nt > 1 && rows * cols >= 65536) schedule(static)
	for (int64_t i = 0; i < rows; i++) {
		float *yr = y + i * cols;
		for (int64_t j = 0; j < cols; j++)
			yr[j] += b[j];
	}
}

/* x' = x + to_out(attention(q, k, v of the pixel tokens of gn(x))), one head of c channels.
 * X the live buffer, A and B the others (A needs 3 n c hw floats):
 *   A = gn(X); B = tokens(A) (n, hw, c); A = B Wqkv^T + b (n, hw, 3c);
 *   B = attention(A); A = B Wo^T; B = channels(A) + bo; X += B.  The result stays in X. */
int vae_attn_run(struct vae_run *r, const struct vae_attn *a)
{
	const int64_t n = r->n, c = a->c, hw = r->h * r->w, rows = n * hw;
	float *X = vae_run_x(r), *A = r->bufs[vae_run_other(r, 1)], *B = r->bufs[vae_run_other(r, 2)];
	int rc;
	if (r->c != c)
		return -EINVAL;
	if ((rc = dops_group_norm(X, A, n, c, hw, r->groups, a->norm.w, a->norm.b, VAE_EPS, false,
	                          r->nt)) != 0 ||
	    (rc = dops_transpose(A, B, n, c, hw, r->nt)) != 0 ||
	    (rc = cpu_matmul(&a->qkv, B, c, rows, A, 3 * c, r->nt)) != 0)
		return rc;
	add_row_bias(A, rows, 3 * c, a->qkv_b, r->nt);
	struct dops_attn p = {
		.q = A, .ldq = 3 * c, .k = A + c, .ldk = 3 * c, .v = A + 2 * c, .ldv = 3 * c,
		.out = B, .ldo = c, .batch = n, .lq = hw, .lk = hw, .n_heads = 1,
		.head_dim = (int)c, .scale = 0,
	};
	if ((rc = dops_attention(&p, r->nt)) != 0 ||
	    (rc = cpu_matmul(&a->o, B, c, rows, A, c, r->nt)) != 0 ||
	    (rc = dops_transpose(A, B, n, hw, c, r->nt)) != 0 ||
	    (rc = dops_add_channel(B, a->o_b, 0, n, c, hw, r->nt)) != 0)
		return rc;
	return dops_add(X, B, n * c * hw, r->nt);
}

/* X -> A = upsample2x(X) -> B = conv(A). */
int vae_upsample_run(struct vae_run *r, struct conv2d *c)
{
	const int a = vae_run_other(r, 1);
	int rc = dops_upsample_nearest2x(vae_run_x(r), r->bufs[a], r->n * r->c, r->h, r->w, r->nt);
	if (rc != 0)
		return rc;
	r->cur = a;
	r->h *= 2;
	r->w *= 2;
	return vae_conv_run(r, c, r->c);
}
