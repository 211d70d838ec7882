/* CUDA kernels of the LLM operators (f32 activations, row-major). Launch helpers at the end are
 * called by backend_cuda.cu. Shapes follow engine/model/backend.h. */
#include "kernels.h"

#include <math.h>

/* ---- reductions ---------------------------------------------------------------------------- */

/* Sum over the block; every thread gets the result. blockDim.x is a multiple of 32, <= 1024. */
__device__ static float block_sum(float v, float *shared32)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	if (lane == 0)
		shared32[warp] = v;
	__syncthreads();
	int n_warps = (blockDim.x + 31) >> 5;
	v = lane < n_warps ? shared32[lane] : 0.0f;
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	__syncthreads();
	return v;
}

__device__ static float block_max(float v, float *shared32)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
	if (lane == 0)
		shared32[warp] = v;
	__syncthreads();
	int n_warps = (blockDim.x + 31) >> 5;
	v = lane < n_warps ? shared32[lane] : -INFINITY;
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	__syncthreads();
	return v;
}

/* ---- elementwise and row operators ----------------------------------------------------------- */

__global__ static void k_rms_norm(const float *x, long ldx, const float *w, float *y, long ldy,
                                  long n, float eps)
{
	__shared__ float s32[32];
	const float *xr = x + blockIdx.x * ldx;
	float *yr = y + blockIdx.x * ldy;
	float ss = 0.0f;
	for (long i = threadIdx.x; i < n; i += blockDim.x)
		ss += xr[i] * xr[i];
	ss = block_sum(ss, s32);
	float inv = rsqrtf(ss / (float)n + eps);
	for (long i = threadIdx.x; i < n; i += blockDim.x)
		yr[i] = xr[i] * inv * w[i];
}

/* One thread per rotated pair. pos: device copy of the rows' positions. */
__global__ static void k_rope(float *x, long ldx, long n_rows, int n_heads, int head_dim,
                              const int *pos, int style, int n_rot, float base, float scale,
                              const float *factors)
{
	long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
	int half = n_rot / 2;
	long total = n_rows * n_heads * half;
	if (idx >= total)
		return;
	int i = (int)(idx % half);
	long rh = idx / half;
	int h = (int)(rh % n_heads);
	long r = rh / n_heads;
	float theta = (float)pos[r] * scale * powf(base, -2.0f * (float)i / (float)n_rot);
	if (factors)
		theta /= factors[i];
	float c = cosf(theta), s = sinf(theta);
	float *xh = x + r * ldx + (long)h * head_dim;
	int a = style == 0 ? 2 * i : i, b = style == 0 ? 2 * i + 1 : i + half;
	float x0 = xh[a], x1 = xh[b];
	xh[a] = x0 * c - x1 * s;
	xh[b] = x0 * s + x1 * c;
}

__global__ static void k_silu_mul(float *g, long ldg, const float *u, long ldu, long n_rows,
                                  long n)
{
	long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (idx >= n_rows * n)
		return;
	long r = idx / n, i = idx % n;
	float v = g[r * ldg + i];
	g[r * ldg + i] = v / (1.0f + expf(-v)) * u[r * ldu + i];
}

__global__ static void k_add(float *y, long ldy, const float *x, long ldx, long n_rows, long n)
{
	long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (idx >= n_rows * n)
		return;
	long r = idx / n, i = idx % n;
	y[r * ldy + i] += x[r * ldx + i]; /* ldx 0: one row broadcast */
}

__global__ static void k_softmax(float *x, long ldx, long n)
{
	__shared__ float s32[32];
	float *xr = x + blockIdx.x * ldx;
	float m = -INFINITY;
	for (long i = threadIdx.x; i < n; i += blockDim.x)
		m = fmaxf(m, xr[i]);
	m = block_max(m, s32);
	float sum = 0.0f;
	for (long i = threadIdx.x; i < n; i += blockDim.x) {
		float e = expf(xr[i] - m);
		xr[i] = e;
		sum += e;
	}
	sum = block_sum(sum, s32);
	for (long i = threadIdx.x; i < n; i += blockDim.x)
		xr[i] /= sum;
}

__global__ static void k_f32_to_f16(const float *x, long ldx, __half *y, long n_rows, long n)
{
	long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
	if (idx >= n_rows * n)
		return;
	long r = idx / n, i = idx % n;
	y[r * n + i] = __float2half(x[r * ldx + i]);
}

/* ---- paged attention ------------------------------------------------------------------------
 * One block per (query row, head); head_dim threads (rounded up to a warp). A single pass with
 * an online softmax over the row's causal context, reading K and V through the block table. */
__global__ static void k_attention(const float *q, long ldq, float *out, long ldo,
                                   const float *kc, const float *vc, int block_size,
                                   int n_heads, int n_kv_heads, int head_dim, float scale,
                                   const struct cuda_attn_row *rows, const int *tables)
{
	__shared__ float s32[32];
	const struct cuda_attn_row rw = rows[blockIdx.x];
	int h = blockIdx.y, t = threadIdx.x;
	int kvh = h / (n_heads / n_kv_heads);
	long kv_dim = (long)n_kv_heads * head_dim;
	const int *table = tables + rw.table_offset;
	float qv = t < head_dim ? q[rw.q_row * ldq + (long)h * head_dim + t] * scale : 0.0f;
	float m = -INFINITY, l = 0.0f, acc = 0.0f;

	for (int p = 0; p <= rw.last_pos; p++) {
		long slot = (long)table[p / block_size] * block_size + p % block_size;
		const float *kp = kc + slot * kv_dim + (long)kvh * head_dim;
		float s = block_sum(t < head_dim ? qv * kp[t] : 0.0f, s32);
		float m_new = fmaxf(m, s);
		float corr = expf(m - m_new), e = expf(s - m_new);
		float v = t < head_dim ? vc[slot * kv_dim + (long)kvh * head_dim + t] : 0.0f;
		acc = acc * corr + e * v;
		l = l * corr + e;
		m = m_new;
	}
	if (t < head_dim)
		out[rw.q_row * ldo + (long)h * head_dim + t] = acc / l;
}

/* ---- launches --------------------------------------------------------------------------------- */

static int threads_for(long n)
{
	return n >= 1024 ? 1024 : n >= 256 ? 256 : ((int)(n + 31) / 32) * 32;
}

static unsigned blocks_of(long total, int threads)
{
	return (unsigned)((total + threads - 1) / threads);
}

extern "C" {

int cuda_launch_rms_norm(cudaStream_t st, const float *x, long ldx, const float *w, float *y,
                         long ldy, long n_rows, long n, float eps)
{
	if (n_rows <= 0)
		return 0;
	k_rms_norm<<<(unsigned)n_rows, threads_for(n), 0, st>>>(x, ldx, w, y, ldy, n, eps);
	return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

int cuda_launch_rope(cudaStream_t st, float *x, long ldx, long n_rows, int n_heads, int head_dim,
                     const int *pos, int style, int n_rot, float base, float scale,
                     const float *factors)
{
	long total = n_rows * n_heads * (n_rot / 2);
	if (total <= 0)
		return 0;
	k_rope<<<blocks_of(total, 256), 256, 0, st>>>(x, ldx, n_rows, n_heads, head_dim, pos, style,
	                                               n_rot, base, scale, factors);
	return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

int cuda_launch_silu_mul(cudaStream_t st, float *g, long ldg, const float *u, long ldu,
                         long n_rows, long n)
{
	long total = n_rows * n;
	if (total <= 0)
		return 0;
	k_silu_mul<<<blocks_of(total, 256), 256, 0, st>>>(g, ldg, u, ldu, n_rows, n);
	return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

int cuda_launch_add(cudaStream_t st, float *y, long ldy, const float *x, long ldx, long n_rows,
                    long n)
{
	long total = n_rows * n;
	if (total <= 0)
		return 0;
	k_add<<<blocks_of(total, 256), 256, 0, st>>>(y, ldy, x, ldx, n_rows, n);
	return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

int cuda_launch_softmax(cudaStream_t st, float *x, long ldx, long n_rows, long n)
{
	if (n_rows <= 0)
		return 0;
	k_softmax<<<(unsigned)n_rows, threads_for(n), 0, st>>>(x, ldx, n);
	return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

int cuda_launch_f32_to_f16(cudaStream_t st, const float *x, long ldx, __half *y, long n_rows,
                           long n)
{
	long total = n_rows * n;
	if (total <= 0)
		return 0;
	k_f32_to_f16<<<blocks_of(total, 256), 256, 0, st>>>(x, ldx, y, n_rows, n);
	return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

int cuda_launch_attention(cudaStream_t st, const float *q, long ldq, float *out, long ldo,
                          const float *kc, const float *vc, int block_size, int n_heads,
                          int n_kv_heads, int head_dim, float scale,
                          const struct cuda_attn_row *rows, long n_rows, const int *tables)
{
	if (n_rows <= 0)
		return 0;
	if (head_dim > 1024 || n_kv_heads <= 0 || n_heads % n_kv_heads)
		return -EINVAL;
	dim3 grid((unsigned)n_rows, (unsigned)n_heads);
	k_attention<<<grid, threads_for(head_dim), 0, st>>>(q, ldq, out, ldo, kc, vc, block_size,
	                                                     n_heads, n_kv_heads, head_dim, scale,
	                                                     rows, tables);
	return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

} /* extern "C" */
