/* CPU operators of the diffusion models (UNet, VAE): normalisations, activations,
 * resampling, broadcast adds, layout changes, dense multi-head attention and the timestep
 * embedding. The convolution is in conv.h.
 *
 * Activations are f32. Image tensors are NCHW with the batch explicit and contiguous
 * (hw = h * w); token tensors are rows with a row stride in floats (ld*). Each op has an
 * AVX2/FMA version and a portable scalar one, chosen at run time with the rest of the CPU
 * backend (cpu_ops_use_simd(); cpu_ops_force_scalar(true) forces the scalar ones, for
 * tests). Work is split over OpenMP threads when large enough; n_threads 0 = the calling
 * thread's OpenMP default. y may equal x wherever both appear, unless said otherwise.
 *
 * Errors: 0, or -EINVAL for NULL pointers, non-positive sizes, row strides shorter than
 * the row, or shapes that do not fit (groups not dividing the channels); -ENOMEM for
 * scratch. Nothing aborts.
 */
#ifndef INFERD_ENGINE_CPU_DIFFUSION_OPS_H
#define INFERD_ENGINE_CPU_DIFFUSION_OPS_H

#include <stdbool.h>
#include <stdint.h>

/* ---- normalisation ---------------------------------------------------------------------- */

/* Group norm over x (n, c, hw): per batch item and group of c/groups channels,
 * y = (x - mean) / sqrt(var + eps) * weight[ch] + bias[ch] (biased variance, as PyTorch),
 * then y = silu(y) when silu. weight/bias (c) may be NULL (1 and 0). -EINVAL when groups
 * does not divide c. */
int dops_group_norm(const float *x, float *y, int64_t n, int64_t c, int64_t hw, int groups,
                    const float *weight, const float *bias, float eps, bool silu, int n_threads);

/* Layer norm of each of `rows` rows of `len` floats: (x - mean) / sqrt(var + eps) * w + b;
 * w/b (len) may be NULL. */
int dops_layer_norm(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows,
                    int64_t len, const float *w, const float *b, float eps, int n_threads);

/* x[r] = softmax(x[r]) for each of `rows` rows of `len` floats. */
int dops_softmax_rows(float *x, int64_t ldx, int64_t rows, int64_t len, int n_threads);

/* ---- activations ------------------------------------------------------------------------- */

/* y = x / (1 + exp(-x)) over count floats. */
int dops_silu(const float *x, float *y, int64_t count, int n_threads);

enum dops_gelu_kind {
	DOPS_GELU_ERF,  /* 0.5 x (1 + erf(x / sqrt 2)), diffusers' default ("gelu") */
	DOPS_GELU_TANH, /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ("gelu-approximate") */
};

/* y = gelu(x) over count floats. */
int dops_gelu(const float *x, float *y, int64_t count, enum dops_gelu_kind kind, int n_threads);

/* GEGLU as diffusers: a row of x is [hidden (len) | gate (len)] (the projection's output
 * chunked in two along the last dim); y[r][i] = hidden[i] * gelu_erf(gate[i]).
 * x (rows, ldx >= 2 len), y (rows, ldy >= len); y may equal x (ldy = ldx). */
int dops_geglu(const float *x, int64_t ldx, float *y, int64_t ldy, int64_t rows, int64_t len,
               int n_threads);

/* ---- resampling and adds ---------------------------------------------------------------- */

/* Nearest 2x upsampling: x (nc, h, w) -> y (nc, 2h, 2w), nc = batch * channels. y must
 * not overlap x. */
int dops_upsample_nearest2x(const float *x, float *y, int64_t nc, int64_t h, int64_t w,
                            int n_threads);

/* y += x over count floats (residual add). */
int dops_add(float *y, const float *x, int64_t count, int n_threads);

/* y (n, c, hw) += b[i * ldb + ch] for batch item i and channel ch: a per-channel value
 * broadcast over the spatial dims. ldb = c for a per-item vector (the timestep embedding
 * projected to (n, c)), 0 for one vector shared by the batch (a bias). */
int dops_add_channel(float *y, const float *b, int64_t ldb, int64_t n, int64_t c, int64_t hw,
                     int n_threads);

/* ---- layout ------------------------------------------------------------------------------------ */

/* y[b] = x[b]^T for each of n matrices of rows x cols (contiguous): NCHW -> token rows
 * (n, h*w, c) with rows = c, cols = h*w, and back with rows = h*w, cols = c. y must not
 * overlap x. */
int dops_transpose(const float *x, float *y, int64_t n, int64_t rows, int64_t cols,
                   int n_threads);

/* y (n, ca + cb, hw) = [a (n, ca, hw) | b (n, cb, hw)] along the channels (the UNet's skip
 * connections, a first as torch.cat([a, b], dim=1)). y must not overlap a or b. */
int dops_concat_channels(const float *a, int64_t ca, const float *b, int64_t cb, int64_t n,
                         int64_t hw, float *y);

/* ---- attention ---------------------------------------------------------------------------- */

/* Dense multi-head attention, per batch item and head:
 *   out[b, i, h] = softmax_j(scale * q[b, i, h] . k[b, j, h]) v[b, j, h]
 * where x[b, i, h] is the head_dim floats at x + (b * l + i) * ld + h * head_dim.
 * Self-attention: lq = lk = h*w tokens; cross-attention: lk = 77 text tokens. Computed in
 * tiles with an online softmax (flash-attention style): scratch is O(tile), never lq x lk.
 * out must not overlap q, k or v. */
struct dops_attn {
	const float *q; int64_t ldq;  /* (batch, lq, ldq >= n_heads*head_dim) */
	const float *k; int64_t ldk;  /* (batch, lk, ldk) */
	const float *v; int64_t ldv;  /* (batch, lk, ldv) */
	float *out; int64_t ldo;      /* (batch, lq, ldo) */
	int64_t batch, lq, lk;
	int n_heads, head_dim;
	float scale;                  /* 0: 1/sqrt(head_dim) */
};

int dops_attention(const struct dops_attn *p, int n_threads);

/* ---- timestep embedding ----------------------------------------------------------------- */

/* diffusers' get_timestep_embedding: half = dim/2,
 *   freq[i] = exp(-ln(max_period) * i / (half - downscale_freq_shift)),
 *   e = [sin(scale t freq) | cos(scale t freq)], [cos | sin] when flip_sin_to_cos,
 * a zero appended when dim is odd. Computed in f32 as PyTorch does. SD 1.x/2.x UNets use
 * flip_sin_to_cos = true, downscale_freq_shift = 0, scale 1, max_period 10000. */
struct dops_timestep_params {
	int dim;
	bool flip_sin_to_cos;
	float downscale_freq_shift;
	float scale;
	float max_period;
};

/* out (n, dim) from the timesteps t (n). -EINVAL when dim < 2 or half == shift. */
int dops_timestep_embedding(const float *t, int64_t n, const struct dops_timestep_params *p,
                            float *out);

#endif
