/* Chat templates: recognising the family of a Jinja template and rendering messages. */
#include "chat_template.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- families ---------------------------------------------------------------------------- */

static const char *const family_names[] = {
	[CHAT_FAMILY_NONE] = "none",       [CHAT_FAMILY_CHATML] = "chatml",
	[CHAT_FAMILY_LLAMA2] = "llama2",   [CHAT_FAMILY_LLAMA3] = "llama3",
	[CHAT_FAMILY_MISTRAL] = "mistral", [CHAT_FAMILY_GEMMA] = "gemma",
	[CHAT_FAMILY_ZEPHYR] = "zephyr",
};

const char *chat_family_name(enum chat_family f)
{
	return (size_t)f < sizeof(family_names) / sizeof(family_names[0]) ? family_names[f] : "none";
}

enum chat_family chat_family_parse(const char *name)
{
	for (size_t i = 1; i < sizeof(family_names) / sizeof(family_names[0]); i++)
		if (name && strcasecmp(name, family_names[i]) == 0)
			return (enum chat_family)i;
	return CHAT_FAMILY_NONE;
}

/* The most specific markers first: llama-3 and gemma templates may mention [INST] in comments,
 * zephyr-like templates reuse </s>. */
enum chat_family chat_template_detect(const char *t)
{
	if (!t || !*t)
		return CHAT_FAMILY_NONE;
	if (strstr(t, "<|start_header_id|>"))
		return CHAT_FAMILY_LLAMA3;
	if (strstr(t, "<|im_start|>"))
		return CHAT_FAMILY_CHATML;
	if (strstr(t, "<start_of_turn>"))
		return CHAT_FAMILY_GEMMA;
	if (strstr(t, "<|user|>") && strstr(t, "<|assistant|>"))
		return CHAT_FAMILY_ZEPHYR;
	if (strstr(t, "[INST]"))
		return strstr(t, "<<SYS>>") ? CHAT_FAMILY_LLAMA2 : CHAT_FAMILY_MISTRAL;
	return CHAT_FAMILY_NONE;
}

/* ---- a growing string -------------------------------------------------------------------- */

struct sbuf {
	char *s;
	size_t len, cap;
	bool oom;
};

static void sb_add(struct sbuf *b, const char *s)
{
	size_t n = strlen(s);
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->cap ? b->cap * 2 : 256);
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->s, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n + 1);
	b->len += n;
}

/* ---- rendering --------------------------------------------------------------------------- */

enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_BAD };

static enum role role_of(const char *r)
{
	if (!r)
		return ROLE_BAD;
	if (strcmp(r, "system") == 0 || strcmp(r, "developer") == 0)
		return ROLE_SYSTEM;
	if (strcmp(r, "user") == 0)
		return ROLE_USER;
	if (strcmp(r, "assistant") == 0)
		return ROLE_ASSISTANT;
	return ROLE_BAD;
}

static const char *role_text(enum role r)
{
	return r == ROLE_SYSTEM ? "system" : r == ROLE_USER ? "user" : "assistant";
}

/* <|im_start|>role\ncontent<|im_end|>\n ... <|im_start|>assistant\n */
static void render_chatml(struct sbuf *b, const struct chat_message *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		sb_add(b, "<|im_start|>");
		sb_add(b, role_text(role_of(m[i].role)));
		sb_add(b, "\n");
		sb_add(b, m[i].content);
		sb_add(b, "<|im_end|>\n");
	}
	sb_add(b, "<|im_start|>assistant\n");
}

static void render_llama3(struct sbuf *b, const struct chat_message *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		sb_add(b, "<|start_header_id|>");
		sb_add(b, role_text(role_of(m[i].role)));
		sb_add(b, "<|end_header_id|>\n\n");
		sb_add(b, m[i].content);
		sb_add(b, "<|eot_id|>");
	}
	sb_add(b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* gemma has no system role: the system text opens the first user turn. */
static void render_gemma(struct sbuf *b, const struct chat_message *m, size_t n)
{
	const char *sys = NULL;
	for (size_t i = 0; i < n; i++) {
		enum role r = role_of(m[i].role);
		if (r == ROLE_SYSTEM) {
			sys = m[i].content;
			continue;
		}
		sb_add(b, "<start_of_turn>");
		sb_add(b, r == ROLE_USER ? "user" : "model");
		sb_add(b, "\n");
		if (sys && r == ROLE_USER) {
			sb_add(b, sys);
			sb_add(b, "\n\n");
			sys = NULL;
		}
		sb_add(b, m[i].content);
		sb_add(b, "<end_of_turn>\n");
	}
	sb_add(b, "<start_of_turn>model\n");
}

static void render_zephyr(struct sbuf *b, const struct chat_message *m, size_t n, const char *eos)
{
	for (size_t i = 0; i < n; i++) {
		sb_add(b, "<|");
		sb_add(b, role_text(role_of(m[i].role)));
		sb_add(b, "|>\n");
		sb_add(b, m[i].content);
		sb_add(b, eos);
		sb_add(b, "\n");
	}
	sb_add(b, "<|assistant|>\n");
}

/* llama-2: [INST] <<SYS>>\nsys\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] user [/INST]
 * mistral: [INST] sys\n\nuser [/INST]answer</s>[INST] user [/INST]
 * The first BOS comes from the tokenizer; later turns repeat it (llama-2 only). */
static void render_inst(struct sbuf *b, const struct chat_message *m, size_t n, bool llama2,
                        const char *bos, const char *eos)
{
	const char *sys = NULL;
	bool first = true;
	for (size_t i = 0; i < n; i++) {
		enum role r = role_of(m[i].role);
		if (r == ROLE_SYSTEM) {
			sys = m[i].content;
			continue;
		}
		if (r == ROLE_ASSISTANT) {
			sb_add(b, llama2 ? " " : "");
			sb_add(b, m[i].content);
			sb_add(b, llama2 ? " " : "");
			sb_add(b, eos);
			continue;
		}
		if (!first && llama2)
			sb_add(b, bos);
		first = false;
		sb_add(b, "[INST] ");
		if (sys) {
			sb_add(b, llama2 ? "<<SYS>>\n" : "");
			sb_add(b, sys);
			sb_add(b, llama2 ? "\n<</SYS>>\n\n" : "\n\n");
			sys = NULL;
		}
		sb_add(b, m[i].content);
		sb_add(b, " [/INST]");
	}
}

int chat_render(enum chat_family f, const struct chat_message *msgs, size_t n, const char *bos,
                const char *eos, char **out, char *err, size_t errlen)
{
	struct sbuf b = { 0 };

	*out = NULL;
	if (n == 0) {
		snprintf(err, errlen, "messages must not be empty");
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		if (role_of(msgs[i].role) == ROLE_BAD) {
			snprintf(err, errlen, "messages[%zu]: unknown role '%s' (system, user, assistant)",
			         i, msgs[i].role ? msgs[i].role : "");
			return -EINVAL;
		}
		if (!msgs[i].content) {
			snprintf(err, errlen, "messages[%zu] has no content", i);
			return -EINVAL;
		}
	}
	bos = bos ? bos : "<s>";
	eos = eos ? eos : "</s>";
	switch (f) {
	case CHAT_FAMILY_CHATML: render_chatml(&b, msgs, n); break;
	case CHAT_FAMILY_LLAMA3: render_llama3(&b, msgs, n); break;
	case CHAT_FAMILY_GEMMA: render_gemma(&b, msgs, n); break;
	case CHAT_FAMILY_ZEPHYR: render_zephyr(&b, msgs, n, eos); break;
	case CHAT_FAMILY_LLAMA2: render_inst(&b, msgs, n, true, bos, eos); break;
	case CHAT_FAMILY_MISTRAL: render_inst(&b, msgs, n, false, bos, eos); break;
	case CHAT_FAMILY_NONE:
	default:
		snprintf(err, errlen, "no chat template family to render with");
		return -EINVAL;
	}
	sb_add(&b, "");
	if (b.oom) {
		free(b.s);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	*out = b.s;
	return 0;
}
