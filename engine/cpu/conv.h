/* 2-D convolution of the CPU backend through oneDNN's convolution primitive, for the UNet
 * and VAE of the diffusion models. Activations are NCHW f32 with the batch explicit.
 *
 *   y[n][o][i][j] = bias[o] + sum_{c,u,v} w[o][c][u][v] * x[n][c][i*sh + u - pt][j*sw + v - pl]
 *
 * (x is zero outside the image.) A `struct conv2d` is one layer: made once from its
 * weights (F32, F16 or BF16, the diffusers layout (out, in, kh, kw); F16/BF16 converted once
 * to f32), which oneDNN then holds in the layout it prefers (format_tag any, reordered
 * once, the caller's buffer is not referenced after conv2d_new). Per input shape
 * (n, h, w) the primitive(s) are created on first use and cached in the object.
 *
 * Threads: conv2d_run may be called from several threads at once on the same object (the
 * shape cache is guarded by a mutex, primitives are immutable once made and use
 * user-managed scratchpads taken per call from a process-wide pool, memory objects are made
 * per call). The convolution runs on the calling thread's OpenMP team
 * (omp_get_max_threads(); set it with omp_set_num_threads()).
 *
 * Errors: 0 or a negative errno code (-EINVAL shapes/arguments, -ENOMEM, -ENOTSUP for a
 * weight dtype or a shape oneDNN has no implementation for). Never aborts.
 */
#ifndef INFERD_ENGINE_CPU_CONV_H
#define INFERD_ENGINE_CPU_CONV_H

#include <stdint.h>

#include "dtype.h"

struct conv2d_desc {
	int in_ch, out_ch;     /* channels */
	int kh, kw;            /* kernel height, width */
	int stride_h, stride_w;
	int pad_t, pad_l;      /* zero padding before the first row / column */
	int pad_b, pad_r;      /* after the last (VAE downsampling pads (0,1,0,1)) */
};

enum conv2d_flags {
	/* Let oneDNN pick the activation layouts (blocked, NHWC) and reorder x in and y out
	 * of them on every call. The default keeps the primitive's src/dst NCHW: measured
	 * faster on the development machines at UNet sizes (bench_diffops prints both). */
	CONV2D_BLOCKED_IO = 1u << 0,
};

struct conv2d;

/* Makes a layer. weight: (out_ch, in_ch, kh, kw) of wtype; bias: (out_ch) of wtype, or NULL
 * for none. Both may be freed by the caller once this returns.
 * @return 0 and *out (free with conv2d_free()), or a negative errno. */
int conv2d_new(const struct conv2d_desc *d, enum dtype wtype, const void *weight,
               const void *bias, unsigned flags, struct conv2d **out);

void conv2d_free(struct conv2d *c); /* accepts NULL */

/* Output size for an input of h x w. @return 0, or -EINVAL if the kernel does not fit. */
int conv2d_out_size(const struct conv2d *c, int64_t h, int64_t w, int64_t *oh, int64_t *ow);

/* y (n, out_ch, oh, ow) = conv(x (n, in_ch, h, w)). x and y must not overlap. */
int conv2d_run(struct conv2d *c, const float *x, int64_t n, int64_t h, int64_t w, float *y);

/* Number of input shapes cached in c (for tests). */
int conv2d_cached_shapes(struct conv2d *c);

/* Scalar reference (double accumulation, for tests): same contract as conv2d_run, with
 * f32 weight (out_ch, in_ch, kh, kw) and bias (out_ch) or NULL. */
int conv2d_reference(const struct conv2d_desc *d, const float *weight, const float *bias,
                     const float *x, int64_t n, int64_t h, int64_t w, float *y);

#endif
