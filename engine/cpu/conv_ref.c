/* Scalar reference convolution (see conv.h): the definition, in double, for tests. */
#include "conv.h"

#include <errno.h>

int conv2d_reference(const struct conv2d_desc *d, const float *weight, const float *bias,
                     const float *x, int64_t n, int64_t h, int64_t w, float *y)
{
	if (d == NULL || weight == NULL || x == NULL || y == NULL || n <= 0 || h <= 0 || w <= 0 ||
	    d->in_ch <= 0 || d->out_ch <= 0 || d->kh <= 0 || d->kw <= 0 || d->stride_h <= 0 ||
	    d->stride_w <= 0)
		return -EINVAL;
	int64_t eh = h + d->pad_t + d->pad_b - d->kh, ew = w + d->pad_l + d->pad_r - d->kw;
	if (eh < 0 || ew < 0)
		return -EINVAL;
	const int64_t oh = eh / d->stride_h + 1, ow = ew / d->stride_w + 1;
	const int64_t ci = d->in_ch, co = d->out_ch;
	for (int64_t b = 0; b < n; b++)
		for (int64_t o = 0; o < co; o++)
			for (int64_t i = 0; i < oh; i++)
				for (int64_t j = 0; j < ow; j++) {
					double s = bias != NULL ? bias[o] : 0.0;
					for (int64_t c = 0; c < ci; c++)
						for (int u = 0; u < d->kh; u++) {
							int64_t yy = i * d->stride_h + u - d->pad_t;
							if (yy < 0 || yy >= h)
								continue;
							for (int v = 0; v < d->kw; v++) {
								int64_t xx = j * d->stride_w + v - d->pad_l;
								if (xx < 0 || xx >= w)
									continue;
								s += (double)weight[((o * ci + c) * d->kh + u) * d->kw + v] *
								     x[((b * ci + c) * h + yy) * w + xx];
							}
						}
					y[((b * co + o) * oh + i) * ow + j] = (float)s;
				}
	return 0;
}
