/* Chat templates: family detection from Jinja texts and the rendered prompts of each family,
 * written out from the published formats (the text the models' own templates produce with
 * add_generation_prompt, without the leading BOS that the tokenizer adds). */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "chat_template.h"

static const struct chat_message conv[] = {
	{ "system", "You are kind." },
	{ "user", "Hi" },
	{ "assistant", "Hello" },
	{ "user", "Again" },
};

static void expect_render(enum chat_family f, const struct chat_message *m, size_t n,
                          const char *want)
{
	char *out = NULL, err[128];
	int rc = chat_render(f, m, n, "<s>", "</s>", &out, err, sizeof err);
	cr_assert_eq(rc, 0, "%s: %s", chat_family_name(f), err);
	cr_assert_str_eq(out, want, "%s rendered\n[%s]\nwanted\n[%s]", chat_family_name(f), out,
	                 want);
	free(out);
}

Test(chat_template, chatml)
{
	expect_render(CHAT_FAMILY_CHATML, conv, 4,
	              "<|im_start|>system\nYou are kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
	              "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nAgain<|im_end|>\n"
	              "<|im_start|>assistant\n");
	expect_render(CHAT_FAMILY_CHATML, conv + 1, 1,
	              "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

Test(chat_template, llama2_with_system_block_and_turn_separators)
{
	expect_render(CHAT_FAMILY_LLAMA2, conv, 4,
	              "[INST] <<SYS>>\nYou are kind.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] "
	              "Again [/INST]");
	expect_render(CHAT_FAMILY_LLAMA2, conv + 1, 1, "[INST] Hi [/INST]");
}

Test(chat_template, llama3_headers)
{
	expect_render(CHAT_FAMILY_LLAMA3, conv, 4,
	              "<|start_header_id|>system<|end_header_id|>\n\nYou are kind.<|eot_id|>"
	              "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
	              "<|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"
	              "<|start_header_id|>user<|end_header_id|>\n\nAgain<|eot_id|>"
	              "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

Test(chat_template, mistral_folds_the_system_prompt_into_the_first_turn)
{
	expect_render(CHAT_FAMILY_MISTRAL, conv, 4,
	              "[INST] You are kind.\n\nHi [/INST]Hello</s>[INST] Again [/INST]");
	expect_render(CHAT_FAMILY_MISTRAL, conv + 1, 1, "[INST] Hi [/INST]");
}

Test(chat_template, gemma_model_turns)
{
	expect_render(CHAT_FAMILY_GEMMA, conv, 4,
	              "<start_of_turn>user\nYou are kind.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
	              "Hello<end_of_turn>\n<start_of_turn>user\nAgain<end_of_turn>\n"
	              "<start_of_turn>model\n");
}

Test(chat_template, zephyr)
{
	expect_render(CHAT_FAMILY_ZEPHYR, conv, 4,
	              "<|system|>\nYou are kind.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello</s>\n"
	              "<|user|>\nAgain</s>\n<|assistant|>\n");
}

Test(chat_template, detection_by_markers)
{
	/* Fragments in the style of the published templates. */
	cr_assert_eq(chat_template_detect("{% for message in messages %}{{'<|im_start|>' + "
	                                  "message['role'] + '\\n' + message['content'] + "
	                                  "'<|im_end|>' + '\\n'}}{% endfor %}"),
	             CHAT_FAMILY_CHATML);
	cr_assert_eq(chat_template_detect("{{ '<|start_header_id|>' + message['role'] + "
	                                  "'<|end_header_id|>\\n\\n' + message['content'] | trim "
	                                  "+ '<|eot_id|>' }}"),
	             CHAT_FAMILY_LLAMA3);
	cr_assert_eq(chat_template_detect("{{ bos_token + '[INST] ' + '<<SYS>>\\n' + system + "
	                                  "'\\n<</SYS>>\\n\\n' + content + ' [/INST]' }}"),
	             CHAT_FAMILY_LLAMA2);
	cr_assert_eq(chat_template_detect("{{ '[INST] ' + message['content'] + ' [/INST]' }}"
	                                  "{{ message['content'] + eos_token }}"),
	             CHAT_FAMILY_MISTRAL);
	cr_assert_eq(chat_template_detect("{{ '<start_of_turn>' + role + '\\n' + "
	                                  "message['content'] | trim + '<end_of_turn>\\n' }}"),
	             CHAT_FAMILY_GEMMA);
	cr_assert_eq(chat_template_detect("{{ '<|user|>\\n' + message['content'] + eos_token }}"
	                                  "{{ '<|assistant|>' }}"),
	             CHAT_FAMILY_ZEPHYR);
	/* llama-3 templates may mention other markers: the most specific wins. */
	cr_assert_eq(chat_template_detect("{# not [INST] #}<|start_header_id|>"), CHAT_FAMILY_LLAMA3);
	cr_assert_eq(chat_template_detect("{{ messages }}"), CHAT_FAMILY_NONE);
	cr_assert_eq(chat_template_detect(""), CHAT_FAMILY_NONE);
	cr_assert_eq(chat_template_detect(NULL), CHAT_FAMILY_NONE);
}

Test(chat_template, names_round_trip)
{
	for (int f = CHAT_FAMILY_CHATML; f <= CHAT_FAMILY_ZEPHYR; f++)
		cr_assert_eq(chat_family_parse(chat_family_name((enum chat_family)f)), f);
	cr_assert_eq(chat_family_parse("ChatML"), CHAT_FAMILY_CHATML);
	cr_assert_eq(chat_family_parse("jinja"), CHAT_FAMILY_NONE);
	cr_assert_eq(chat_family_parse(NULL), CHAT_FAMILY_NONE);
}

Test(chat_template, bad_input_is_refused_with_a_reason)
{
	char *out = NULL, err[128] = "";
	const struct chat_message tool[] = { { "tool", "x" } };
	cr_assert_eq(chat_render(CHAT_FAMILY_CHATML, conv, 0, NULL, NULL, &out, err, sizeof err),
	             -EINVAL);
	cr_assert_null(out);
	cr_assert_gt(strlen(err), 0);
	err[0] = 0;
	cr_assert_eq(chat_render(CHAT_FAMILY_LLAMA3, tool, 1, NULL, NULL, &out, err, sizeof err),
	             -EINVAL);
	cr_assert(strstr(err, "tool"), "%s", err);
	cr_assert_eq(chat_render(CHAT_FAMILY_NONE, conv, 1, NULL, NULL, &out, err, sizeof err),
	             -EINVAL);
}
