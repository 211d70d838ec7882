/* GGUF reader: lookups and typed getters over a parsed file. Values are read
 * from the file in place (little-endian, possibly unaligned). */
#include "gguf-internal.h"

#include <errno.h>
#include <string.h>

static uint64_t ld(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = n; i-- > 0;)
		v = (v << 8) | p[i];
	return v;
}

const char *gguf_vtype_name(enum gguf_vtype t)
{
	static const char *const names[GGUF_VTYPE_COUNT] = {
		"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
		"bool", "string", "array", "uint64", "int64", "float64",
	};
	return (unsigned)t < GGUF_VTYPE_COUNT ? names[t] : "invalid";
}

uint32_t gguf_version(const struct gguf *g) { return g->version; }
uint32_t gguf_alignment(const struct gguf *g) { return g->alignment; }
uint64_t gguf_data_offset(const struct gguf *g) { return g->data_offset; }
uint64_t gguf_file_size(const struct gguf *g) { return g->size; }
const void *gguf_file_data(const struct gguf *g) { return g->base; }
int64_t gguf_n_kv(const struct gguf *g) { return g->n_kv; }
int64_t gguf_n_tensors(const struct gguf *g) { return g->n_tensors; }

static const char *kv_name(const struct gguf *g, int64_t i, size_t *len)
{
	*len = g->kv[i].key_len;
	return g->kv[i].key;
}

static const char *tensor_name(const struct gguf *g, int64_t i, size_t *len)
{
	*len = strlen(g->tensors[i].name);
	return g->tensors[i].name;
}

int64_t gguf_find_key(const struct gguf *g, const char *key)
{
	return gguf_index_find(&g->kv_index, key, strlen(key), kv_name, g);
}

const char *gguf_kv_key(const struct gguf *g, int64_t kid)
{
	return kid >= 0 && kid < g->n_kv ? g->kv[kid].key : NULL;
}

enum gguf_vtype gguf_kv_type(const struct gguf *g, int64_t kid)
{
	return kid >= 0 && kid < g->n_kv ? (enum gguf_vtype)g->kv[kid].type : GGUF_VTYPE_COUNT;
}

/* ---- scalar decoding ------------------------------------------------------------- */

static bool is_int(uint32_t t)
{
	switch (t) {
	case GGUF_VTYPE_UINT8: case GGUF_VTYPE_INT8: case GGUF_VTYPE_UINT16:
	case GGUF_VTYPE_INT16: case GGUF_VTYPE_UINT32: case GGUF_VTYPE_INT32:
	case GGUF_VTYPE_UINT64: case GGUF_VTYPE_INT64:
		return true;
	default:
		return false;
	}
}

static bool is_signed(uint32_t t)
{
	return t == GGUF_VTYPE_INT8 || t == GGUF_VTYPE_INT16 || t == GGUF_VTYPE_INT32 ||
	       t == GGUF_VTYPE_INT64;
}

/* Integer or bool at p of type t, as a sign flag plus magnitude-preserving pair. */
static void decode_int(uint32_t t, const uint8_t *p, int64_t *sv, uint64_t *uv, bool *neg)
{
	size_t n = gguf_vtype_size(t);
	uint64_t raw = ld(p, n);
	if (is_signed(t) && n < 8 && (raw >> (8 * n - 1)) & 1)
		raw |= ~0ull << (8 * n); /* sign-extend */
	*uv = raw;
	*sv = (int64_t)raw;
	*neg = is_signed(t) && *sv < 0;
}

static int get_int_at(uint32_t t, const uint8_t *p, int64_t *out)
{
	if (!is_int(t) && t != GGUF_VTYPE_BOOL)
		return -EINVAL;
	int64_t sv;
	uint64_t uv;
	bool neg;
	decode_int(t, p, &sv, &uv, &neg);
	if (t == GGUF_VTYPE_UINT64 && uv > (uint64_t)INT64_MAX)
		return -ERANGE;
	*out = sv;
	return 0;
}

static int get_uint_at(uint32_t t, const uint8_t *p, uint64_t *out)
{
	if (!is_int(t))
		return -EINVAL;
	int64_t sv;
	uint64_t uv;
	bool neg;
	decode_int(t, p, &sv, &uv, &neg);
	if (neg)
		return -ERANGE;
	*out = uv;
	return 0;
}

static int get_float_at(uint32_t t, const uint8_t *p, double *out)
{
	if (t == GGUF_VTYPE_FLOAT32) {
		uint32_t u = (uint32_t)ld(p, 4);
		float f;
		memcpy(&f, &u, 4);
		*out = f;
		return 0;
	}
	if (t == GGUF_VTYPE_FLOAT64) {
		uint64_t u = ld(p, 8);
		memcpy(out, &u, 8);
		return 0;
	}
	return -EINVAL;
}

static const struct gguf_kv *lookup(const struct gguf *g, const char *key, int *rc)
{
	int64_t i = gguf_find_key(g, key);
	*rc = i < 0 ? -ENOENT : 0;
	return i < 0 ? NULL : &g->kv[i];
}

static const struct gguf_kv *kv_at(const struct gguf *g, int64_t kid)
{
	return kid >= 0 && kid < g->n_kv ? &g->kv[kid] : NULL;
}

/* ---- typed getters by key ----------------------------------------------------------- */

#define EXACT_GETTER(fn, ctype, vt)                                          \
	int fn(const struct gguf *g, const char *key, ctype *out)            \
	{                                                                    \
		int rc;                                                      \
		const struct gguf_kv *kv = lookup(g, key, &rc);              \
		if (kv == NULL)                                              \
			return rc;                                           \
		if (kv->type != (vt))                                        \
			return -EINVAL;                                      \
		uint64_t raw = ld(kv->val, sizeof(ctype));                   \
		memcpy(out, &raw, sizeof(ctype)); /* little-endian host */   \
		return 0;                                                    \
	}

EXACT_GETTER(gguf_get_u8, uint8_t, GGUF_VTYPE_UINT8)
EXACT_GETTER(gguf_get_u32, uint32_t, GGUF_VTYPE_UINT32)
EXACT_GETTER(gguf_get_i32, int32_t, GGUF_VTYPE_INT32)
EXACT_GETTER(gguf_get_u64, uint64_t, GGUF_VTYPE_UINT64)

int gguf_get_bool(const struct gguf *g, const char *key, bool *out)
{
	int rc;
	const struct gguf_kv *kv = lookup(g, key, &rc);
	if (kv == NULL)
		return rc;
	if (kv->type != GGUF_VTYPE_BOOL)
		return -EINVAL;
	*out = kv->val[0] != 0;
	return 0;
}

int gguf_get_f64(const struct gguf *g, const char *key, double *out)
{
	int rc;
	const struct gguf_kv *kv = lookup(g, key, &rc);
	if (kv == NULL)
		return rc;
	if (kv->type != GGUF_VTYPE_FLOAT64)
		return -EINVAL;
	return get_float_at(kv->type, kv->val, out);
}

int gguf_get_f32(const struct gguf *g, const char *key, float *out)
{
	int rc;
	const struct gguf_kv *kv = lookup(g, key, &rc);
	if (kv == NULL)
		return rc;
	double d;
	if ((rc = get_float_at(kv->type, kv->val, &d)) < 0)
		return rc;
	*out = (float)d;
	return 0;
}

int gguf_get_str(const struct gguf *g, const char *key, const char **out, size_t *len)
{
	int rc;
	const struct gguf_kv *kv = lookup(g, key, &rc);
	if (kv == NULL)
		return rc;
	return gguf_kv_get_str(g, kv - g->kv, out, len);
}

int gguf_get_uint(const struct gguf *g, const char *key, uint64_t *out)
{
	int rc;
	const struct gguf_kv *kv = lookup(g, key, &rc);
	if (kv == NULL)
		return rc;
	return gguf_kv_get_uint(g, kv - g->kv, out);
}

int gguf_get_uint32(const struct gguf *g, const char *key, uint32_t *out)
{
	uint64_t v;
	int rc = gguf_get_uint(g, key, &v);
	if (rc < 0)
		return rc;
	if (v > UINT32_MAX)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

int gguf_get_int(const struct gguf *g, const char *key, int64_t *out)
{
	int rc;
	const struct gguf_kv *kv = lookup(g, key, &rc);
	if (kv == NULL)
		return rc;
	if (!is_int(kv->type))
		return -EINVAL;
	return get_int_at(kv->type, kv->val, out);
}

/* ---- getters by index ------------------------------------------------------------- */

int gguf_kv_get_int(const struct gguf *g, int64_t kid, int64_t *out)
{
	const struct gguf_kv *kv = kv_at(g, kid);
	return kv ? get_int_at(kv->type, kv->val, out) : -ENOENT;
}

int gguf_kv_get_uint(const struct gguf *g, int64_t kid, uint64_t *out)
{
	const struct gguf_kv *kv = kv_at(g, kid);
	return kv ? get_uint_at(kv->type, kv->val, out) : -ENOENT;
}

int gguf_kv_get_float(const struct gguf *g, int64_t kid, double *out)
{
	const struct gguf_kv *kv = kv_at(g, kid);
	return kv ? get_float_at(kv->type, kv->val, out) : -ENOENT;
}

int gguf_kv_get_str(const struct gguf *g, int64_t kid, const char **out, size_t *len)
{
	const struct gguf_kv *kv = kv_at(g, kid);
	if (kv == NULL)
		return -ENOENT;
	if (kv->type != GGUF_VTYPE_STRING)
		return -EINVAL;
	*out = kv->str;
	if (len)
		*len = (size_t)kv->len;
	return 0;
}

int gguf_kv_get_arr(const struct gguf *g, int64_t kid, const struct gguf_arr **out)
{
	const struct gguf_kv *kv = kv_at(g, kid);
	if (kv == NULL)
		return -ENOENT;
	if (kv->type != GGUF_VTYPE_ARRAY)
		return -EINVAL;
	*out = &kv->arr;
	return 0;
}

int gguf_get_arr(const struct gguf *g, const char *key, const struct gguf_arr **out)
{
	int rc;
	const struct gguf_kv *kv = lookup(g, key, &rc);
	if (kv == NULL)
		return rc;
	return gguf_kv_get_arr(g, kv - g->kv, out);
}

/* ---- arrays ------------------------------------------------------------------------ */

enum gguf_vtype gguf_arr_type(const struct gguf_arr *a) { return (enum gguf_vtype)a->type; }
uint64_t gguf_arr_len(const struct gguf_arr *a) { return a->n; }

const void *gguf_arr_data(const struct gguf_arr *a)
{
	return gguf_vtype_size(a->type) ? a->data : NULL;
}

int gguf_arr_get_str(const struct gguf_arr *a, uint64_t i, const char **s, size_t *len)
{
	if (a->type != GGUF_VTYPE_STRING)
		return -EINVAL;
	if (i >= a->n)
		return -ERANGE;
	const uint8_t *p = a->data + a->str_off[i];
	*len = (size_t)ld(p, 8);
	*s = (const char *)p + 8;
	return 0;
}

static const uint8_t *elem(const struct gguf_arr *a, uint64_t i)
{
	return a->data + i * gguf_vtype_size(a->type);
}

int gguf_arr_get_int(const struct gguf_arr *a, uint64_t i, int64_t *out)
{
	if (!is_int(a->type) && a->type != GGUF_VTYPE_BOOL)
		return -EINVAL;
	if (i >= a->n)
		return -ERANGE;
	return get_int_at(a->type, elem(a, i), out);
}

int gguf_arr_get_uint(const struct gguf_arr *a, uint64_t i, uint64_t *out)
{
	if (!is_int(a->type))
		return -EINVAL;
	if (i >= a->n)
		return -ERANGE;
	return get_uint_at(a->type, elem(a, i), out);
}

int gguf_arr_get_float(const struct gguf_arr *a, uint64_t i, double *out)
{
	if (a->type != GGUF_VTYPE_FLOAT32 && a->type != GGUF_VTYPE_FLOAT64)
		return -EINVAL;
	if (i >= a->n)
		return -ERANGE;
	return get_float_at(a->type, elem(a, i), out);
}

int gguf_arr_get_f32(const struct gguf_arr *a, uint64_t i, float *out)
{
	double d;
	int rc = gguf_arr_get_float(a, i, &d);
	if (rc == 0)
		*out = (float)d;
	return rc;
}

int gguf_arr_sub(const struct gguf_arr *a, uint64_t i, const struct gguf_arr **out)
{
	if (a->type != GGUF_VTYPE_ARRAY)
		return -EINVAL;
	if (i >= a->n)
		return -ERANGE;
	*out = &a->sub[i];
	return 0;
}

/* ---- tensors ------------------------------------------------------------------------ */

int64_t gguf_find_tensor(const struct gguf *g, const char *name)
{
	return gguf_index_find(&g->tensor_index, name, strlen(name), tensor_name, g);
}

const struct gguf_tensor_info *gguf_tensor(const struct gguf *g, int64_t tid)
{
	return tid >= 0 && tid < g->n_tensors ? &g->tensors[tid] : NULL;
}

const struct gguf_tensor_info *gguf_get_tensor(const struct gguf *g, const char *name)
{
	return gguf_tensor(g, gguf_find_tensor(g, name));
}
