/* The cuda backend: the backend table on one NVIDIA GPU (device memory, cuBLAS GEMMs, own
 * kernels for the other operators, paged attention over a KV cache in device memory).
 *
 * Pointers given to its ops are device pointers from its alloc(); the small per-call tables
 * (positions, attention sequences and block tables) are host memory, uploaded by the op.
 * Weights: F32 and F16 (others: -ENOTSUP until dequantizing kernels exist). KV cache: F32.
 * Ops run in order on the backend's stream; copy() on another stream overlaps them.
 * Errors: 0 or a negative errno (-ENODEV without a device, -ENOSYS without CUDA in the build).
 */
#ifndef INFERD_ENGINE_BACKEND_CUDA_H
#define INFERD_ENGINE_BACKEND_CUDA_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sets b up on device `device`. @return 0, or a negative errno with the reason in err. */
int backend_cuda_init(struct backend *b, int device, char *err, size_t errlen);
/* Releases what backend_cuda_init() made (accepts a backend that failed to init). */
void backend_cuda_fini(struct backend *b);

#ifdef __cplusplus
}
#endif

#endif
