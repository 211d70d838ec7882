/* Launchers of the CUDA kernels (kernels.cu), for backend_cuda.cu. Pointers are device memory;
 * every launcher returns 0 or -EIO (launch failure) / -EINVAL. */
#ifndef INFERD_ENGINE_CUDA_KERNELS_H
#define INFERD_ENGINE_CUDA_KERNELS_H

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <errno.h>

/* One query row of a paged-attention call, as uploaded to the device. */
struct cuda_attn_row {
	long q_row;          /* row of q and out */
	int last_pos;        /* attends to positions 0..last_pos */
	int table_offset;    /* its sequence's block table in the uploaded tables */
};

#ifdef __cplusplus
extern "C" {
#endif

int cuda_launch_rms_norm(cudaStream_t st, const float *x, long ldx, const float *w, float *y,
                         long ldy, long n_rows, long n, float eps);
int cuda_launch_rope(cudaStream_t st, float *x, long ldx, long n_rows, int n_heads, int head_dim,
                     const int *pos, int style, int n_rot, float base, float scale,
                     const float *factors);
int cuda_launch_silu_mul(cudaStream_t st, float *g, long ldg, const float *u, long ldu,
                         long n_rows, long n);
int cuda_launch_add(cudaStream_t st, float *y, long ldy, const float *x, long ldx, long n_rows,
                    long n);
int cuda_launch_softmax(cudaStream_t st, float *x, long ldx, long n_rows, long n);
int cuda_launch_f32_to_f16(cudaStream_t st, const float *x, long ldx, __half *y, long n_rows,
                           long n);
int cuda_launch_attention(cudaStream_t st, const float *q, long ldq, float *out, long ldo,
                          const float *kc, const float *vc, int block_size, int n_heads,
                          int n_kv_heads, int head_dim, float scale,
                          const struct cuda_attn_row *rows, long n_rows, const int *tables);

#ifdef __cplusplus
}
#endif

#endif
