/* Chat templates: turning a list of messages into the prompt text a model was trained on.
 *
 * The GGUF's tokenizer.chat_template is a Jinja template. Rather than run Jinja, the daemon
 * recognises the common families by distinctive substrings and renders them with its own code:
 * chatml (<|im_start|>), llama-2 ([INST] with <<SYS>>), llama-3 (<|start_header_id|>), mistral
 * ([INST] without <<SYS>>), gemma (<start_of_turn>), zephyr (<|user|>). A model's config can
 * name the family instead ([model.NAME] chat_template = ...).
 *
 * The rendered text never starts with the BOS token: the tokenizer adds it (add_bos). It ends
 * with the assistant's header (add_generation_prompt). Special-token text in it (<|im_start|>,
 * </s>...) must be tokenized with parse_special.
 */
#ifndef INFERD_SERVER_CHAT_TEMPLATE_H
#define INFERD_SERVER_CHAT_TEMPLATE_H

#include <stddef.h>

enum chat_family {
	CHAT_FAMILY_NONE,        /* no template, or one not recognised */
	CHAT_FAMILY_CHATML,
	CHAT_FAMILY_LLAMA2,
	CHAT_FAMILY_LLAMA3,
	CHAT_FAMILY_MISTRAL,
	CHAT_FAMILY_GEMMA,
	CHAT_FAMILY_ZEPHYR,
};

struct chat_message {
	const char *role;        /* system, user, assistant (developer counts as system) */
	const char *content;
};

/* @return the family a Jinja template belongs to, or CHAT_FAMILY_NONE. */
enum chat_family chat_template_detect(const char *jinja);
/* @return the family named (chatml, llama2, ...), or CHAT_FAMILY_NONE. */
enum chat_family chat_family_parse(const char *name);
const char *chat_family_name(enum chat_family f);

/* Renders messages for family f with the generation prompt. bos / eos: the model's token
 * texts (for the families that repeat them between turns; may be NULL).
 * @return 0 and *out (free with free()), -EINVAL with a message (an unknown role, no messages,
 * an unknown family), -ENOMEM. */
int chat_render(enum chat_family f, const struct chat_message *msgs, size_t n, const char *bos,
                const char *eos, char **out, char *err, size_t errlen);

#endif
