/* The LLM methods: Generate (streaming tokens from a model's worker) and Tokenize. */
#ifndef INFERD_SERVER_GENERATE_H
#define INFERD_SERVER_GENERATE_H

#include <stddef.h>
#include <stdint.h>

struct call;
struct generation;
struct served_model;

/* A Generate call's state (call->method_state). */
struct generate_state {
	struct generation *gen;      /* NULL once the generation ended */
	struct served_model *model;
};

void method_generate(struct call *c, const uint8_t *payload, size_t len);
void method_tokenize(struct call *c, const uint8_t *payload, size_t len);

#endif
