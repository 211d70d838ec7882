/* CLIP text encoder speed against its own matmuls run alone (same shapes, same cpu_matmul), in
 * one run: how close the encoder is to its kernels. SD 1.5 sizes (width 768, 12 layers, 12
 * heads, ffn 3072, 77 tokens), random f32 weights, B = 2 (cond + uncond) and B = 1.
 *   bench_clip_text [--quick]      (--quick: 4 layers, fewer repetitions) */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clip_text.h"
#include "matmul.h"
#include "../bench_util.h"

int main(int argc, char **argv)
{
	const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	const int W = 768, F = 3072, T = 77, L = quick ? 4 : 12, reps = quick ? 3 : 7;
	struct clip_text_config c = { .n_vocab = 1000, .n_ctx = T, .width = W, .n_layers = L,
	                              .n_heads = 12, .ffn = F, .ln_eps = 1e-5f,
	                              .act = CLIP_ACT_QUICK_GELU };
	const size_t big = (size_t)F * W;
	float *wbuf = malloc(big * sizeof *wbuf), *ones = malloc((size_t)F * sizeof *ones);
	float *emb = malloc((size_t)c.n_vocab * W * sizeof *emb);
	struct clip_layer_weights *lw = calloc((size_t)L, sizeof *lw);
	if (wbuf == NULL || ones == NULL || emb == NULL || lw == NULL)
		return 1;
	unsigned s = 1;
	for (size_t i = 0; i < big; i++) {
		s = s * 1103515245u + 12345u;
		wbuf[i] = ((float)((s >> 9) & 0xffff) / 65536.0f - 0.5f) * 0.05f;
	}
	for (int i = 0; i < F; i++)
		ones[i] = 1.0f;
	for (size_t i = 0; i < (size_t)c.n_vocab * W; i++)
		emb[i] = wbuf[i % big];
	/* every weight shares one random buffer: the model copies them anyway */
	struct clip_weight rw = { DTYPE_F32, wbuf }, one = { DTYPE_F32, ones };
	for (int l = 0; l < L; l++)
		lw[l] = (struct clip_layer_weights){ one, rw, rw, rw, rw, rw, rw, rw, rw, rw,
		                                     one, rw, rw, rw, rw, rw };
	struct clip_weights w = { { DTYPE_F32, emb }, { DTYPE_F32, emb }, lw, one, rw };
	struct clip_text *m = NULL;
	char err[256];
	if (clip_text_new(&c, &w, &m, err, sizeof err) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	int32_t ids[2 * 77];
	for (int i = 0; i < 2 * T; i++)
		ids[i] = i % c.n_vocab;
	float *out = malloc(2 * (size_t)T * F * sizeof *out), *x = malloc(2 * (size_t)T * F * sizeof *x);
	if (out == NULL || x == NULL)
		return 1;
	memset(x, 0, 2 * (size_t)T * F * sizeof *x);
	struct cpu_weight qkv, o, fc1, fc2;
	cpu_weight_init(&qkv, DTYPE_F32, wbuf, W, 3 * W);
	cpu_weight_init(&o, DTYPE_F32, wbuf, W, W);
	cpu_weight_init(&fc1, DTYPE_F32, wbuf, W, F);
	cpu_weight_init(&fc2, DTYPE_F32, wbuf, F, W);

	printf("CLIP text encoder, width %d, %d layers, ffn %d, %d tokens, %d threads\n", W, L, F,
	       T, omp_get_max_threads());
	for (int B = 1; B <= 2; B++) {
		double tf[16], tm[16];
		for (int r = 0; r < reps; r++) { /* interleaved, medians */
			double t0 = bench_now();
			if (clip_text_forward(m, ids, B, 0, out, 0) != 0)
				return 1;
			double t1 = bench_now();
			for (int l = 0; l < L; l++) {
				const int R = B * T;
				if (cpu_matmul(&qkv, x, W, R, out, 3 * W, 0) != 0 ||
				    cpu_matmul(&o, x, W, R, out, W, 0) != 0 ||
				    cpu_matmul(&fc1, x, W, R, out, F, 0) != 0 ||
				    cpu_matmul(&fc2, x, F, R, out, W, 0) != 0)
					return 1;
			}
			tf[r] = t1 - t0;
			tm[r] = bench_now() - t1;
		}
		qsort(tf, (size_t)reps, sizeof *tf, bench_cmp_double);
		qsort(tm, (size_t)reps, sizeof *tm, bench_cmp_double);
		double flop = 2.0 * B * T * L * (4.0 * W * W + 2.0 * W * F);
		printf("B=%d: forward %.2f ms, its matmuls alone %.2f ms (%.1f GFLOP/s): "
		       "ratio %.2f\n", B, tf[reps / 2] * 1e3, tm[reps / 2] * 1e3,
		       flop / tm[reps / 2] * 1e-9, tf[reps / 2] / tm[reps / 2]);
	}
	clip_text_free(m);
	free(wbuf);
	free(ones);
	free(emb);
	free(lw);
	free(out);
	free(x);
	return 0;
}
