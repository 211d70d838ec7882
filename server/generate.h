/* The LLM methods: Generate (streaming tokens from a model's worker) and Tokenize. */
#ifndef INFERD_SERVER_GENERATE_H
#define INFERD_SERVER_GENERATE_H

#include <stddef.h>
#include <stdint.h>

struct call;
struct served_model;

void method_generate(struct call *c, const uint8_t *payload, size_t len);
void method_tokenize(struct call *c, const uint8_t *payload, size_t len);

/* Loop thread, when the model's worker signals: turns its events into reply frames. */
void generate_collect(struct served_model *m);

#endif
