/* inferd-mkmodel: writes small random-weight models in the real file formats so
 * that the daemon runs out of the box and tests need no download.
 *
 *   inferd-mkmodel llm --out PATH [--dim N] [--layers N] [--heads N] [--kv-heads N]
 *       [--ffn N] [--vocab N] [--context N]
 *       [--dtype f32|f16|bf16|q8_0|q4_0|q4_k|q6_k|q4_k_m]
 *       [--tokenizer spm|bpe] [--seed N] [--rope-base F] [--tied] [--name NAME]
 *
 * Weights are deterministic for a seed: tensor T draws from a splitmix64 stream
 * seeded with splitmix64(seed XOR fnv1a64(T's name)), so a tensor's values do not
 * depend on the other tensors or the dtype (a q8_0 file holds the quantized
 * weights of the f32 file with the same seed). Normal deviates come from the
 * Box-Muller transform. Scales: token embeddings N(0, 1); linear weights
 * N(0, 1/fan_in) so that activations keep unit scale through the RMS norms;
 * norm weights 1 + N(0, 0.02^2).
 *
 * --dtype sets the type of every 2-D weight; 1-D norm weights stay F32.
 * q4_k_m is the mix of llama.cpp's Q4_K_M files, simplified: Q6_K for
 * output.weight (token_embd.weight when tied), every attn_v and ffn_down,
 * Q4_K for the rest (llama.cpp gives Q6_K to only some layers' attn_v and
 * ffn_down, chosen by layer position).
 *
 * Exit codes: 0 done, 1 I/O or memory error, 2 usage error.
 */
#include "dtype.h"
#include "gguf_write.h"
#include "mkmodel.h"
#include "mkmodel-diffusion.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct llm_opts {
	const char *out, *name;
	const char *chat_template;   /* tokenizer.chat_template (a Jinja text), or NULL */
	long dim, layers, heads, kv_heads, ffn, vocab, context;
	enum dtype dtype;            /* most 2-D weights */
	enum dtype dtype_hi;         /* attn_v, ffn_down, output: differs for q4_k_m */
	uint32_t file_type;          /* general.file_type, llama.cpp's llama_ftype */
	const char *dtype_arg;       /* --dtype as given, for messages */
	bool bpe, tied;
	unsigned long long seed;
	double rope_base;
};

/* ---- deterministic random numbers --------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) /* in (0, 1] */
{
	return ((double)(splitmix64(s) >> 11) + 1.0) * (1.0 / 9007199254740992.0);
}

static double normal(uint64_t *s)
{
	double u1 = uniform01(s), u2 = uniform01(s);
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static uint64_t fnv1a64(const char *str)
{
	uint64_t h = 1469598103934665603ull;
	for (; *str; str++)
		h = (h ^ (unsigned char)*str) * 1099511628211ull;
	return h;
}

/* ---- tensors ---------------------------------------------------------------------------- */

enum init_kind { INIT_EMBED, INIT_LINEAR, INIT_NORM };

struct mk_tensor {
	char name[64];
	enum dtype type;
	uint32_t n_dims;
	int64_t ne[2];        /* ne[0] = input features (contiguous), ne[1] = outputs */
	enum init_kind init;
};

struct mk_model {
	const struct llm_opts *o;
	struct mk_tensor *t;
	size_t n;
	float *row;           /* scratch: one f32 row */
};

static void add_t(struct mk_model *m, const char *name, enum dtype type, uint32_t n_dims,
                  int64_t ne0, int64_t ne1, enum init_kind init)
{
	struct mk_tensor *t = &m->t[m->n++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->type = n_dims == 1 ? DTYPE_F32 : type; /* 1-D norm weights are always f32 */
	t->n_dims = n_dims;
	t->ne[0] = ne0;
	t->ne[1] = ne1;
	t->init = init;
}

static int plan_tensors(struct mk_model *m)
{
	const struct llm_opts *o = m->o;
	int64_t dim = o->dim, ffn = o->ffn, vocab = o->vocab;
	int64_t kv_dim = dim / o->heads * o->kv_heads;
	char nm[64];

	m->t = calloc((size_t)o->layers * 9 + 3, sizeof *m->t);
	if (m->t == NULL)
		return -ENOMEM;
	/* tied: token_embd is also the output matrix and gets its type */
	add_t(m, "token_embd.weight", o->tied ? o->dtype_hi : o->dtype, 2, dim, vocab, INIT_EMBED);
	for (long l = 0; l < o->layers; l++) {
#define BLK(suffix, type, nd, a, b, init)                             \
	snprintf(nm, sizeof nm, "blk.%ld." suffix, l);                \
	add_t(m, nm, type, nd, a, b, init)
		BLK("attn_norm.weight", DTYPE_F32, 1, dim, 1, INIT_NORM);
		BLK("attn_q.weight", o->dtype, 2, dim, dim, INIT_LINEAR);
		BLK("attn_k.weight", o->dtype, 2, dim, kv_dim, INIT_LINEAR);
		BLK("attn_v.weight", o->dtype_hi, 2, dim, kv_dim, INIT_LINEAR);
		BLK("attn_output.weight", o->dtype, 2, dim, dim, INIT_LINEAR);
		BLK("ffn_norm.weight", DTYPE_F32, 1, dim, 1, INIT_NORM);
		BLK("ffn_gate.weight", o->dtype, 2, dim, ffn, INIT_LINEAR);
		BLK("ffn_up.weight", o->dtype, 2, dim, ffn, INIT_LINEAR);
		BLK("ffn_down.weight", o->dtype_hi, 2, ffn, dim, INIT_LINEAR);
#undef BLK
	}
	add_t(m, "output_norm.weight", DTYPE_F32, 1, dim, 1, INIT_NORM);
	if (!o->tied)
		add_t(m, "output.weight", o->dtype_hi, 2, dim, vocab, INIT_LINEAR);
	return 0;
}

static int fill_tensor(size_t idx, void *buf, size_t nbytes, void *arg)
{
	struct mk_model *m = arg;
	const struct mk_tensor *t = &m->t[idx];
	uint64_t s = m->o->seed ^ fnv1a64(t->name);
	s = splitmix64(&s);
	uint64_t row_bytes;
	if (dtype_row_size(t->type, t->ne[0], &row_bytes) < 0 ||
	    row_bytes * (uint64_t)t->ne[1] != nbytes)
		return -EINVAL;
	double sd = t->init == INIT_EMBED ? 1.0 : t->init == INIT_NORM ? 0.02 : 1.0 / sqrt((double)t->ne[0]);
	double mean = t->init == INIT_NORM ? 1.0 : 0.0;
	for (int64_t r = 0; r < t->ne[1]; r++) {
		for (int64_t i = 0; i < t->ne[0]; i++)
			m->row[i] = (float)(mean + sd * normal(&s));
		int rc = dtype_quant_row(t->type, m->row, (uint8_t *)buf + r * row_bytes, t->ne[0]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- metadata --------------------------------------------------------------------------- */

static int add_metadata(struct gguf_writer *w, const struct llm_opts *o, const struct mk_vocab *v)
{
	int rc = 0;
	rc |= gguf_writer_add_str(w, "general.architecture", "llama");
	rc |= gguf_writer_add_str(w, "general.name", o->name);
	rc |= gguf_writer_add_u32(w, "general.alignment", GGUF_DEFAULT_ALIGNMENT);
	rc |= gguf_writer_add_u32(w, "general.file_type", o->file_type);
	rc |= gguf_writer_add_u32(w, "llama.context_length", (uint32_t)o->context);
	rc |= gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)o->dim);
	rc |= gguf_writer_add_u32(w, "llama.block_count", (uint32_t)o->layers);
	rc |= gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)o->ffn);
	rc |= gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)o->heads);
	rc |= gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)o->kv_heads);
	rc |= gguf_writer_add_f32(w, "llama.rope.freq_base", (float)o->rope_base);
	rc |= gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
	rc |= gguf_writer_add_u32(w, "llama.rope.dimension_count", (uint32_t)(o->dim / o->heads));
	rc |= gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)o->vocab);

	rc |= gguf_writer_add_str(w, "tokenizer.ggml.model", o->bpe ? "gpt2" : "llama");
	if (o->bpe)
		rc |= gguf_writer_add_str(w, "tokenizer.ggml.pre", "gpt2");
	rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, v->n);
	rc |= gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", v->scores, v->n);
	rc |= gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", v->types, v->n);
	if (o->bpe)
		rc |= gguf_writer_add_arr_str(w, "tokenizer.ggml.merges",
		                              (const char *const *)v->merges, v->n_merges);
	rc |= gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
	rc |= gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
	if (v->unk >= 0)
		rc |= gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk);
	if (v->pad >= 0)
		rc |= gguf_writer_add_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)v->pad);
	rc |= gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", !o->bpe);
	rc |= gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", false);
	if (o->chat_template)
		rc |= gguf_writer_add_str(w, "tokenizer.chat_template", o->chat_template);
	return rc ? -ENOMEM : 0;
}

static int write_llm(const struct llm_opts *o)
{
	struct mk_model m = { .o = o };
	struct mk_vocab v;
	struct gguf_writer *w = NULL;
	char err[512];
	int rc, ret = 1;

	if ((rc = mk_vocab_build(&v, o->bpe, (size_t)o->vocab)) < 0) {
		fprintf(stderr, "inferd-mkmodel: cannot build the vocabulary: %s\n", strerror(-rc));
		return 1;
	}
	long maxrow = o->dim > o->ffn ? o->dim : o->ffn;
	m.row = malloc((size_t)maxrow * sizeof *m.row);
	w = gguf_writer_new(GGUF_DEFAULT_ALIGNMENT);
	if (m.row == NULL || w == NULL || plan_tensors(&m) < 0 || add_metadata(w, o, &v) < 0) {
		fprintf(stderr, "inferd-mkmodel: out of memory\n");
		goto out;
	}
	for (size_t i = 0; i < m.n; i++) {
		const struct mk_tensor *t = &m.t[i];
		if ((rc = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne)) < 0) {
			fprintf(stderr, "inferd-mkmodel: tensor %s: %s\n", t->name, strerror(-rc));
			goto out;
		}
	}
	if (gguf_writer_write(w, o->out, fill_tensor, &m, err, sizeof err) < 0) {
		fprintf(stderr, "inferd-mkmodel: %s\n", err);
		goto out;
	}
	ret = 0;
out:
	gguf_writer_free(w);
	mk_vocab_fini(&v);
	free(m.t);
	free(m.row);
	return ret;
}

/* ---- command line ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: inferd-mkmodel llm --out PATH [--dim N] [--layers N] [--heads N]\n"
	        "           [--kv-heads N] [--ffn N] [--vocab N] [--context N]\n"
	        "           [--dtype f32|f16|bf16|q8_0|q4_0|q4_k|q6_k|q4_k_m]\n"
	        "           [--tokenizer spm|bpe] [--seed N] [--rope-base F] [--tied]\n"
	        "           [--name NAME] [--chat-template TEXT]\n"
	        "       inferd-mkmodel diffusion --out DIR [--seed N] [--size tiny|small]\n"
	        "           [--dtype f32|f16]\n"
	        "Writes a small llama-architecture GGUF v3 model with random weights\n"
	        "(deterministic for a seed). Defaults: --dim 64 --layers 2 --heads 4\n"
	        "--kv-heads = heads --ffn 192 --vocab 512 --context 256 --dtype f32\n"
	        "--tokenizer spm --seed 1 --rope-base 10000. --chat-template writes\n"
	        "tokenizer.chat_template (the daemon recognises the family by its markers).\n"
	        "--dtype types the 2-D weights (norms stay f32); q4_k_m: q6_k for output,\n"
	        "attn_v and ffn_down, q4_k for the rest. q4_0/q8_0 need --dim and --ffn\n"
	        "multiples of 32, the k-quants (q4_k, q6_k, q4_k_m) multiples of 256.\n");
}

static int bad(const char *fmt, const char *a)
{
	fprintf(stderr, "inferd-mkmodel: ");
	fprintf(stderr, fmt, a);
	fprintf(stderr, "\nTry 'inferd-mkmodel --help'.\n");
	return 2;
}

static int parse_long(const char *opt, const char *s, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "inferd-mkmodel: --%s: '%s' is not an integer in [%ld, %ld]\n", opt, s,
		        lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int check_llm(const struct llm_opts *o)
{
	char msg[160];
	if (o->out == NULL)
		return bad("%s", "llm: --out PATH is required");
	if (o->dim % o->heads != 0 || (o->dim / o->heads) % 2 != 0) {
		snprintf(msg, sizeof msg, "--dim %ld must be a multiple of 2 x --heads %ld", o->dim,
		         o->heads);
		return bad("%s", msg);
	}
	if (o->heads % o->kv_heads != 0) {
		snprintf(msg, sizeof msg, "--heads %ld must be a multiple of --kv-heads %ld", o->heads,
		         o->kv_heads);
		return bad("%s", msg);
	}
	/* a 2-D tensor's rows (ne[0], --dim or --ffn) are whole blocks of its type:
	 * --dim for every matrix but ffn_down, --ffn for ffn_down (see plan_tensors) */
	const struct { long n; const char *opt; enum dtype t; } rows[] = {
		{ o->dim, "--dim", o->dtype }, { o->dim, "--dim", o->dtype_hi },
		{ o->ffn, "--ffn", o->dtype_hi },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		int64_t blk = dtype_block_elems(rows[i].t);
		if (rows[i].n % blk != 0) {
			snprintf(msg, sizeof msg, "--dtype %s needs %s (%ld) a multiple of %lld",
			         o->dtype_arg, rows[i].opt, rows[i].n, (long long)blk);
			return bad("%s", msg);
		}
	}
	if (!(o->rope_base > 0.0) || !isfinite(o->rope_base))
		return bad("%s", "--rope-base must be a positive number");
	return 0;
}

/* --dtype values: tensor types and llama.cpp's LLAMA_FTYPE_* for general.file_type
 * (ALL_F32 0, MOSTLY_F16 1, Q4_0 2, Q8_0 7, Q4_K_S 14, Q4_K_M 15, Q6_K 18, BF16 32;
 * a file of Q4_K only is what llama.cpp calls Q4_K_S, less its few Q5_K tensors). */
static const struct llm_dtype {
	const char *name;
	enum dtype type, type_hi;
	uint32_t ftype;
} llm_dtypes[] = {
	{ "f32", DTYPE_F32, DTYPE_F32, 0 },     { "f16", DTYPE_F16, DTYPE_F16, 1 },
	{ "bf16", DTYPE_BF16, DTYPE_BF16, 32 }, { "q8_0", DTYPE_Q8_0, DTYPE_Q8_0, 7 },
	{ "q4_0", DTYPE_Q4_0, DTYPE_Q4_0, 2 },  { "q4_k", DTYPE_Q4_K, DTYPE_Q4_K, 14 },
	{ "q6_k", DTYPE_Q6_K, DTYPE_Q6_K, 18 }, { "q4_k_m", DTYPE_Q4_K, DTYPE_Q6_K, 15 },
};

static int set_dtype(struct llm_opts *o, const char *s)
{
	for (size_t i = 0; i < sizeof llm_dtypes / sizeof llm_dtypes[0]; i++) {
		if (strcasecmp(s, llm_dtypes[i].name) == 0) {
			o->dtype = llm_dtypes[i].type;
			o->dtype_hi = llm_dtypes[i].type_hi;
			o->file_type = llm_dtypes[i].ftype;
			o->dtype_arg = llm_dtypes[i].name;
			return 0;
		}
	}
	return -EINVAL;
}

static const char *opt_name(const struct option *lopts, int c)
{
	for (; lopts->name; lopts++)
		if (lopts->val == c)
			return lopts->name;
	return "?";
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "out", required_argument, NULL, 'o' },   { "dim", required_argument, NULL, 'd' },
		{ "layers", required_argument, NULL, 'l' }, { "heads", required_argument, NULL, 'H' },
		{ "kv-heads", required_argument, NULL, 'K' }, { "ffn", required_argument, NULL, 'f' },
		{ "vocab", required_argument, NULL, 'v' }, { "context", required_argument, NULL, 'c' },
		{ "dtype", required_argument, NULL, 't' }, { "tokenizer", required_argument, NULL, 'T' },
		{ "seed", required_argument, NULL, 's' },  { "rope-base", required_argument, NULL, 'r' },
		{ "tied", no_argument, NULL, 'y' },        { "name", required_argument, NULL, 'n' },
		{ "chat-template", required_argument, NULL, 'C' },
		{ "help", no_argument, NULL, 'h' },        { NULL, 0, NULL, 0 },
	};
	struct llm_opts o = {
		.name = "inferd-mkmodel random llama", .dim = 64, .layers = 2, .heads = 4,
		.kv_heads = -1, .ffn = 192, .vocab = 512, .context = 256, .dtype = DTYPE_F32,
		.dtype_hi = DTYPE_F32, .file_type = 0, .dtype_arg = "f32", .seed = 1,
		.rope_base = 10000.0,
	};

	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc < 2)
		return bad("%s", "missing model kind: llm or diffusion");
	if (strcmp(argv[1], "diffusion") == 0)
		return mkmodel_diffusion_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "llm") != 0)
		return bad("unknown model kind '%s' (llm or diffusion)", argv[1]);

	optind = 2;
	opterr = 0;
	int c;
	while ((c = getopt_long(argc, argv, ":h", lopts, NULL)) != -1) {
		long *dst = NULL, lo = 1, hi = 1 << 20;
		switch (c) {
		case 'o': o.out = optarg; break;
		case 'n': o.name = optarg; break;
		case 'C': o.chat_template = optarg; break;
		case 'd': dst = &o.dim; hi = 65536; break;
		case 'l': dst = &o.layers; hi = 4096; break;
		case 'H': dst = &o.heads; hi = 4096; break;
		case 'K': dst = &o.kv_heads; hi = 4096; break;
		case 'f': dst = &o.ffn; hi = 1 << 18; break;
		case 'v': dst = &o.vocab; lo = MK_VOCAB_MIN; hi = MK_VOCAB_MAX; break;
		case 'c': dst = &o.context; hi = 1 << 24; break;
		case 'y': o.tied = true; break;
		case 'h': usage(stdout); return 0;
		case 't':
			if (set_dtype(&o, optarg) < 0)
				return bad("--dtype: '%s' is not one of f32, f16, bf16, q8_0, q4_0, q4_k, "
				           "q6_k, q4_k_m", optarg);
			break;
		case 'T':
			if (strcmp(optarg, "spm") != 0 && strcmp(optarg, "bpe") != 0)
				return bad("--tokenizer: '%s' is not spm or bpe", optarg);
			o.bpe = strcmp(optarg, "bpe") == 0;
			break;
		case 's': {
			char *end;
			errno = 0;
			o.seed = strtoull(optarg, &end, 0);
			if (errno || end == optarg || *end || optarg[0] == '-')
				return bad("--seed: '%s' is not an unsigned integer", optarg);
			break;
		}
		case 'r': {
			char *end;
			o.rope_base = strtod(optarg, &end);
			if (end == optarg || *end)
				return bad("--rope-base: '%s' is not a number", optarg);
			break;
		}
		case ':': return bad("option %s needs a value", argv[optind - 1]);
		default: return bad("unknown option '%s'", argv[optind - 1]);
		}
		if (dst && parse_long(opt_name(lopts, c), optarg, lo, hi, dst) < 0)
			return 2;
	}
	if (optind < argc)
		return bad("unexpected argument '%s'", argv[optind]);
	if (o.kv_heads < 0)
		o.kv_heads = o.heads;
	int rc = check_llm(&o);
	if (rc)
		return rc;
	return write_llm(&o);
}
