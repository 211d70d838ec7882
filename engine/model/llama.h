/* llama-family decoder models loaded from GGUF: `llama` (Llama 2/3, TinyLlama,
 * Mistral; grouped-query attention) and `qwen2` (Q/K/V biases, neox RoPE).
 *
 * Weights are used in place from the GGUF mapping (the gguf must outlive the
 * model); only 1-D tensors (norms, biases, rope factors) are copied to f32.
 * Scratch buffers for up to max_batch_tokens tokens per forward call are
 * allocated at load, so forward calls do not allocate.
 *
 * Errors: 0 or a negative errno code. llama_model_load() writes a one-line
 * reason naming the key or tensor at fault (missing, wrong shape, wrong type,
 * unknown architecture) into err.
 */
#ifndef INFERD_ENGINE_LLAMA_H
#define INFERD_ENGINE_LLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "gguf.h"
#include "kv_cache.h"

enum llama_arch {
	LLAMA_ARCH_LLAMA = 0,
	LLAMA_ARCH_QWEN2 = 1,
};

struct llama_hparams {
	enum llama_arch arch;
	int n_vocab;
	int n_ctx_train;       /* {arch}.context_length */
	int dim;               /* embedding_length */
	int n_layers;          /* block_count */
	int n_ff;              /* feed_forward_length */
	int n_heads;
	int n_kv_heads;
	int head_dim;          /* dim / n_heads, or attention.key_length */
	float norm_eps;        /* attention.layer_norm_rms_epsilon */
	struct rope_params rope; /* style, n_rot, base, scale (freq_factors owned by the model) */
	bool tied_output;      /* output.weight absent: token_embd.weight is used */
	bool qkv_bias;
};

struct llama_load_params {
	struct backend *backend;  /* kept by pointer; must outlive the model */
	int max_batch_tokens;     /* tokens per forward call, >= 1 */
	/* Weight dtype override: when convert_weights is set, every matrix stored as F32, F16
	 * or BF16 is converted at load to weight_type (F32, F16, BF16, Q8_0, Q4_0, Q4_K,
	 * Q6_K) into memory the model owns, instead of being used in place. Matrices already
	 * quantized stay as stored (requantizing compounds the error), and so does a matrix
	 * whose row length is not a whole number of weight_type blocks. */
	bool convert_weights;
	enum dtype weight_type;
};

struct llama_model;

/* Loads the model of the opened GGUF g (which must outlive the model).
 * @return 0 and *out (free with llama_model_free()), or -EINVAL (bad or
 * missing key/tensor, wrong shape), -ENOTSUP (unknown architecture, tensor
 * type, rope scaling), -ENOMEM; with a reason in err. */
int llama_model_load(const struct gguf *g, const struct llama_load_params *p,
                     struct llama_model **out, char *err, size_t errlen);
void llama_model_free(struct llama_model *m); /* accepts NULL */

const struct llama_hparams *llama_model_hparams(const struct llama_model *m);
/* Matrices converted at load by the weight dtype override (0 without it). */
int llama_model_n_converted(const struct llama_model *m);
/* Bytes of weights read by one forward pass (all matrices + the rows looked up). */
uint64_t llama_model_weight_bytes(const struct llama_model *m);
/* Parameters of the weight matrices (what a token's 2*params FLOPs count). */
uint64_t llama_model_n_params(const struct llama_model *m);

/* Fills kv cache parameters matching the model (f32 K/V; set out->type =
 * DTYPE_F16 afterwards for a half-size cache). */
void llama_kv_params(const struct llama_model *m, int block_size, int n_blocks,
                     struct kv_cache_params *out);

#endif
