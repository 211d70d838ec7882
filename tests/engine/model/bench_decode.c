/* Decode, batched-decode and prefill speed of the llama forward pass, each
 * printed as a ratio to a bound measured in the same run (never asserted):
 *
 *   single-sequence decode   tokens/s  vs  memcpy bandwidth / weight bytes per token
 *   batched decode (B seqs)  tokens/s  vs  dnnl_sgemm GFLOP/s / (2 x params)
 *   prefill of 512 tokens    tokens/s  vs  the same compute bound
 *
 * The model (about 170M parameters: dim 1024, 12 layers, 16 heads / 4 kv heads,
 * ffn 2816, vocab 32000) is generated with inferd-mkmodel into a temporary
 * folder for each dtype and removed afterwards.
 *
 * Weight bytes per token are the sizes of the weight matrices as loaded (one
 * row of token_embd, every other matrix whole; a mixed file such as q4_k_m
 * counts each tensor at its own type), checked against the GGUF's own tensor
 * sizes.
 *
 * Environment: INFERD_MKMODEL (required), INFERD_BENCH_DTYPES (default
 * "f32,q8_0,q4_0"; any inferd-mkmodel --dtype: f32, f16, bf16, q8_0, q4_0,
 * q4_k, q6_k, q4_k_m), INFERD_BENCH_LAYERS (default 12), OMP_NUM_THREADS.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <dnnl.h>
#include <immintrin.h>
#include <omp.h>

#include "backend_cpu.h"
#include "forward.h"
#include "gguf.h"
#include "kv_cache.h"
#include "llama.h"

#define PROMPT 512
#define CTX0 16      /* context of each sequence before the decode steps */
#define MAX_B 64
#define BLOCK 16

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- baselines ------------------------------------------------------------------------ */

/* Bytes copied per second by memcpy of a 512 MiB buffer split over the OpenMP team. */
static double memcpy_bw(void)
{
	const size_t n = (size_t)512 << 20;
	char *a = malloc(n), *b = malloc(n);
	if (a == NULL || b == NULL)
		return 0.0;
	memset(a, 1, n);
	memset(b, 2, n);
	double best = 1e9;
	for (int rep = 0; rep < 5; rep++) {
		double t0 = now();
#pragma omp parallel
		{
			int nt = omp_get_num_threads(), id = omp_get_thread_num();
			size_t chunk = n / (size_t)nt;
			memcpy(b + chunk * (size_t)id, a + chunk * (size_t)id, chunk);
		}
		double t = now() - t0;
		best = t < best ? t : best;
	}
	free(a);
	free(b);
	return (double)n / best;
}

/* Sum of n floats with four AVX2 accumulators: streams at the memory's read speed. */
__attribute__((target("avx2"))) static float sum_avx2(const float *a, size_t n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
	for (size_t i = 0; i + 32 <= n; i += 32) {
		s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));
		s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 8));
		s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 16));
		s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 24));
	}
	float t[8];
	_mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
	return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}

/* Bytes read per second by a streaming sum over a 512 MiB buffer on the OpenMP
 * team: what decode needs (weights are only read). */
static double read_bw(void)
{
	const size_t n = ((size_t)512 << 20) / sizeof(float);
	float *a = aligned_alloc(64, n * sizeof *a);
	if (a == NULL)
		return 0.0;
	for (size_t i = 0; i < n; i++)
		a[i] = 1.0f;
	double best = 1e9;
	volatile float sink = 0.0f;
	for (int rep = 0; rep < 5; rep++) {
		float s = 0.0f;
		double t0 = now();
#pragma omp parallel reduction(+ : s)
		{
			size_t nt = (size_t)omp_get_num_threads(), id = (size_t)omp_get_thread_num();
			size_t chunk = n / nt / 32 * 32;
			s += sum_avx2(a + chunk * id, chunk);
		}
		double t = now() - t0;
		sink += s;
		best = t < best ? t : best;
	}
	free(a);
	return (double)(n / (size_t)omp_get_max_threads() / 32 * 32 * (size_t)omp_get_max_threads() *
	                sizeof(float)) / best;
}

/* Best dnnl_sgemm GFLOP/s at M=512, N=2816, K=1024 (row-major, B transposed like weights). */
static double sgemm_gflops(void)
{
	const dnnl_dim_t M = 512, N = 2816, K = 1024;
	float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N * K);
	float *c = malloc(sizeof(float) * M * N);
	if (!a || !b || !c)
		return 0.0;
	for (dnnl_dim_t i = 0; i < M * K; i++)
		a[i] = (float)(i % 7) * 0.1f;
	for (dnnl_dim_t i = 0; i < N * K; i++)
		b[i] = (float)(i % 5) * 0.1f;
	double best = 1e9;
	for (int rep = 0; rep < 6; rep++) {
		double t0 = now();
		if (dnnl_sgemm('N', 'T', M, N, K, 1.0f, a, K, b, K, 0.0f, c, N) != dnnl_success)
			best = 0;
		double t = now() - t0;
		best = t < best ? t : best;
	}
	free(a);
	free(b);
	free(c);
	return best > 0 ? 2.0 * M * N * K / best * 1e-9 : 0.0;
}

/* ---- one model -------------------------------------------------------------------------- */

/* Bytes of the matrices a decode step reads, from the file's tensor infos:
 * one row of token_embd (all of it when tied, as the output matrix), every
 * other 2-D tensor whole; 1-D norms are not counted (nor by the model).
 * Writes the 2-D tensors' types and counts to mix ("Q4_K x134 Q6_K x25"). */
static uint64_t file_token_bytes(const struct gguf *g, char *mix, size_t len)
{
	int count[DTYPE_COUNT] = { 0 };
	uint64_t n = 0;
	bool tied = gguf_get_tensor(g, "output.weight") == NULL;
	for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
		const struct gguf_tensor_info *t = gguf_tensor(g, i);
		if (t->n_dims != 2)
			continue;
		count[t->type]++;
		if (strcmp(t->name, "token_embd.weight") == 0)
			n += t->nbytes / (uint64_t)t->ne[1] + (tied ? t->nbytes : 0);
		else
			n += t->nbytes;
	}
	size_t o = 0;
	mix[0] = 0;
	for (int k = 0; k < DTYPE_COUNT && o < len; k++)
		if (count[k])
			o += (size_t)snprintf(mix + o, len - o, "%s%s x%d", o ? " " : "", dtype_name(k),
			                      count[k]);
	return n;
}

struct run {
	struct gguf *g;
	struct backend b;
	struct llama_model *m;
	struct kv_cache *kv;
	struct kv_seq seq[MAX_B];
	int32_t tok[PROMPT];
	float *logits;
};

/* Sequences 0..B-1 get CTX0 tokens of context (batched prefills of up to
 * PROMPT tokens each). */
static int setup_context(struct run *r, int B)
{
	struct fwd_seq fs[MAX_B];
	int n = 0, rc;
	for (int s = 0; s < B; s++) {
		kv_seq_release(&r->seq[s], r->kv);
		if (kv_seq_reserve(&r->seq[s], r->kv, CTX0 + 64) < 0)
			return -ENOSPC;
		fs[n++] = (struct fwd_seq){ .tokens = r->tok + s, .n_tokens = CTX0, .pos = 0,
		                            .block_table = r->seq[s].blocks,
		                            .n_blocks = r->seq[s].n_blocks };
		if ((n + 1) * CTX0 > PROMPT || s == B - 1) {
			if ((rc = llama_forward(r->m, r->kv, fs, n, NULL)) < 0)
				return rc;
			n = 0;
		}
	}
	return 0;
}

/* Decode steps of B sequences for about min_s seconds; tokens/s of the fastest
 * step (best-of-N like the baselines: the machine is shared, slow steps are
 * other processes' time slices). */
static double decode_rate(struct run *r, int B, double min_s)
{
	struct fwd_seq fs[MAX_B];
	int32_t next[MAX_B];
	if (setup_context(r, B) < 0)
		return 0.0;
	int steps = 0;
	double t0 = now(), best = 1e9;
	while ((now() - t0 < min_s || steps < 3) && steps < 60) {
		for (int s = 0; s < B; s++) {
			next[s] = r->tok[(s + steps) % PROMPT];
			fs[s] = (struct fwd_seq){ .tokens = &next[s], .n_tokens = 1, .pos = CTX0 + steps,
			                          .block_table = r->seq[s].blocks,
			                          .n_blocks = r->seq[s].n_blocks,
			                          .logits = FWD_LOGITS_LAST };
		}
		double ts = now();
		if (llama_forward(r->m, r->kv, fs, B, r->logits) < 0)
			return 0.0;
		ts = now() - ts;
		best = ts < best ? ts : best;
		steps++;
	}
	return (double)B / best;
}

static double prefill_rate(struct run *r)
{
	double best = 1e9;
	for (int rep = 0; rep < 3; rep++) {
		kv_seq_release(&r->seq[0], r->kv);
		if (kv_seq_reserve(&r->seq[0], r->kv, PROMPT) < 0)
			return 0.0;
		struct fwd_seq fs = { .tokens = r->tok, .n_tokens = PROMPT, .pos = 0,
		                      .block_table = r->seq[0].blocks, .n_blocks = r->seq[0].n_blocks,
		                      .logits = FWD_LOGITS_LAST };
		double t0 = now();
		if (llama_forward(r->m, r->kv, &fs, 1, r->logits) < 0)
			return 0.0;
		double t = now() - t0;
		best = t < best ? t : best;
	}
	return PROMPT / best;
}

static int bench_model(const char *path, const char *dtype, double bw, double rbw, double gflops)
{
	struct run r;
	char err[256];
	int rc;
	memset(&r, 0, sizeof r);
	backend_cpu_init(&r.b, 0);
	if ((rc = gguf_open(path, &r.g, err, sizeof err)) < 0) {
		fprintf(stderr, "bench: %s\n", err);
		return rc;
	}
	struct llama_load_params lp = { .backend = &r.b, .max_batch_tokens = PROMPT };
	if ((rc = llama_model_load(r.g, &lp, &r.m, err, sizeof err)) < 0) {
		fprintf(stderr, "bench: %s\n", err);
		goto out;
	}
	const struct llama_hparams *hp = llama_model_hparams(r.m);
	struct kv_cache_params kp;
	int per_seq = (PROMPT + BLOCK - 1) / BLOCK;
	llama_kv_params(r.m, BLOCK, MAX_B * ((CTX0 + 64 + BLOCK - 1) / BLOCK) + per_seq, &kp);
	rc = -ENOMEM;
	r.logits = malloc((size_t)MAX_B * hp->n_vocab * sizeof(float));
	if (r.logits == NULL || kv_cache_new(&r.b, &kp, &r.kv) < 0)
		goto out;
	for (int s = 0; s < MAX_B; s++)
		if (kv_seq_init(&r.seq[s], r.kv, PROMPT) < 0)
			goto out;
	for (int i = 0; i < PROMPT; i++)
		r.tok[i] = 3 + (int32_t)((i * 7919u) % (unsigned)(hp->n_vocab - 3));

	char mix[128];
	uint64_t fbytes = file_token_bytes(r.g, mix, sizeof mix);
	double wbytes = (double)llama_model_weight_bytes(r.m);
	double params = (double)llama_model_n_params(r.m);
	double mem_bound = bw / wbytes, flop_bound = gflops * 1e9 / (2.0 * params);
	printf("%s: %.1fM params, %.1f MB of weights per token (%s)\n", dtype, params * 1e-6,
	       wbytes * 1e-6, mix);
	if ((uint64_t)wbytes != fbytes)
		printf("  note: the model reads %.1f MB per token, the file's tensors hold %.1f MB\n",
		       wbytes * 1e-6, (double)fbytes * 1e-6);
	double d1 = decode_rate(&r, 1, 2.0);
	printf("  decode  B=1 : %8.2f tok/s   compute bound %7.2f tok/s   ratio %.2f\n", d1,
	       flop_bound, d1 / flop_bound);
	printf("  decode  B=1 : %8.2f tok/s   memory bound %8.2f tok/s (memcpy)  ratio %.2f;"
	       " %8.2f tok/s (read)  ratio %.2f\n", d1, mem_bound, d1 / mem_bound,
	       rbw / wbytes, d1 / (rbw / wbytes));
	int bs[] = { 4, 16, 64 };
	for (int i = 0; i < 3; i++) {
		double d = decode_rate(&r, bs[i], 2.0);
		printf("  decode  B=%-2d: %8.2f tok/s   compute bound %7.2f tok/s   ratio %.2f\n", bs[i],
		       d, flop_bound, d / flop_bound);
	}
	double p = prefill_rate(&r);
	printf("  prefill %d : %8.2f tok/s   compute bound %7.2f tok/s   ratio %.2f\n", PROMPT, p,
	       flop_bound, p / flop_bound);
	fflush(stdout);
	rc = 0;
out:
	for (int s = 0; s < MAX_B; s++)
		kv_seq_fini(&r.seq[s], r.kv);
	free(r.logits);
	kv_cache_free(r.kv);
	llama_model_free(r.m);
	gguf_free(r.g);
	return rc;
}

int main(void)
{
	const char *mk = getenv("INFERD_MKMODEL");
	const char *dts = getenv("INFERD_BENCH_DTYPES");
	const char *layers = getenv("INFERD_BENCH_LAYERS");
	char dir[] = "/tmp/inferd-bench-XXXXXX", path[256], cmd[768], list[128];
	int ret = 0;

	if (mk == NULL) {
		fprintf(stderr, "bench_decode: set INFERD_MKMODEL to inferd-mkmodel's path\n");
		return 1;
	}
	if (mkdtemp(dir) == NULL) {
		perror("bench_decode: mkdtemp");
		return 1;
	}
	printf("threads %d (2-core machine: other builds running at the same time disturb the "
	       "figures)\n", omp_get_max_threads());
	snprintf(list, sizeof list, "%s", dts ? dts : "f32,q8_0,q4_0");
	for (char *save = NULL, *dt = strtok_r(list, ",", &save); dt; dt = strtok_r(NULL, ",", &save)) {
		snprintf(path, sizeof path, "%s/bench-%s.gguf", dir, dt);
		snprintf(cmd, sizeof cmd, "'%s' llm --out '%s' --dim 1024 --layers %s --heads 16 "
		         "--kv-heads 4 --ffn 2816 --vocab 32000 --context 4096 --dtype %s", mk, path,
		         layers ? layers : "12", dt);
		if (system(cmd) != 0) {
			fprintf(stderr, "bench_decode: %s failed\n", cmd);
			ret = 1;
			continue;
		}
		/* baselines again for each model: the machine is shared and its load drifts */
		double bw = memcpy_bw(), rbw = read_bw(), gf = sgemm_gflops();
		printf("memcpy %.1f GB/s copied (%.1f GB/s of traffic); streaming read %.1f GB/s; "
		       "dnnl_sgemm 512x2816x1024 %.1f GFLOP/s\n", bw * 1e-9, 2 * bw * 1e-9, rbw * 1e-9,
		       gf);
		if (bench_model(path, dt, bw, rbw, gf) < 0)
			ret = 1;
		unlink(path);
	}
	rmdir(dir);
	return ret;
}
