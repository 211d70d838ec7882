/* inferd-tokenize: token ids of a text with a GGUF file's tokenizer (vocab-only
 * files work), or the text of token ids.
 *
 *   inferd-tokenize [--no-bos] [--special] MODEL.gguf [TEXT|-]
 *   inferd-tokenize --decode [--special] MODEL.gguf [IDS|-]
 *
 * Without TEXT, or with "-", the text comes from standard input (all of it,
 * bytes as they are). Ids are printed whitespace-separated on one line.
 * --decode reads whitespace-separated ids and writes the text exactly (no
 * newline is added unless standard output is a terminal).
 *
 * Exit codes: 0 done, 1 the file or the input cannot be used, 2 usage error.
 */
#include "gguf.h"
#include "tokenizer.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: inferd-tokenize [--no-bos] [--special] MODEL.gguf [TEXT|-]\n"
	        "       inferd-tokenize --decode [--special] MODEL.gguf [IDS|-]\n"
	        "Prints the token ids of TEXT (standard input without TEXT or with '-')\n"
	        "as the GGUF file's tokenizer encodes it, whitespace-separated.\n"
	        "  --no-bos   add no BOS/EOS token\n"
	        "  --special  match special-token text (<s>, <|eot_id|>...) as those tokens;\n"
	        "             with --decode, print special tokens as their text\n"
	        "  --decode   read token ids and print their text\n");
}

/* Reads all of f into *buf (NUL-terminated). */
static int read_all(FILE *f, char **buf, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	if (b == NULL)
		return -ENOMEM;
	for (;;) {
		if (cap - n < 2) {
			char *nb = realloc(b, cap * 2);
			if (nb == NULL) {
				free(b);
				return -ENOMEM;
			}
			b = nb;
			cap *= 2;
		}
		size_t r = fread(b + n, 1, cap - n - 1, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		free(b);
		return -EIO;
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
}

static int encode(const struct tokenizer *tok, const char *text, size_t len, bool bos, bool special)
{
	size_t cap = len + 16, n;
	int32_t *ids = malloc(cap * sizeof *ids);
	if (ids == NULL)
		return -ENOMEM;
	int rc = tok_encode(tok, text, len, bos, special, ids, cap, &n);
	if (rc == -ENOBUFS) { /* the first guess was short: *n is the exact count */
		int32_t *nids = realloc(ids, n * sizeof *ids);
		if (nids == NULL) {
			free(ids);
			return -ENOMEM;
		}
		ids = nids;
		rc = tok_encode(tok, text, len, bos, special, ids, n, &n);
	}
	if (rc == 0) {
		for (size_t i = 0; i < n; i++)
			printf(i ? " %d" : "%d", (int)ids[i]);
		putchar('\n');
	}
	free(ids);
	return rc;
}

static int decode(const struct tokenizer *tok, const char *text, bool special)
{
	size_t n = 0, cap = 64;
	int32_t *ids = malloc(cap * sizeof *ids);
	char *out = NULL;
	int rc = -ENOMEM;
	if (ids == NULL)
		return -ENOMEM;
	for (const char *p = text;;) {
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		char *end;
		errno = 0;
		long v = strtol(p, &end, 10);
		if (end == p || errno || v < 0 || v >= tok_vocab_size(tok)) {
			int l = 0;
			while (p[l] && p[l] != ' ' && p[l] != '\n' && l < 32)
				l++;
			fprintf(stderr, "inferd-tokenize: '%.*s' is not a token id in [0, %d)\n", l, p,
			        (int)tok_vocab_size(tok));
			rc = -EINVAL;
			goto out;
		}
		if (n == cap) {
			int32_t *nids = realloc(ids, 2 * cap * sizeof *ids);
			if (nids == NULL)
				goto out;
			ids = nids;
			cap *= 2;
		}
		ids[n++] = (int32_t)v;
		p = end;
	}
	unsigned flags = TOK_DECODE_STRIP_LEADING | (special ? TOK_DECODE_SPECIAL : 0);
	size_t len;
	tok_decode(tok, ids, n, flags, NULL, 0, &len);
	out = malloc(len + 1);
	if (out == NULL)
		goto out;
	if ((rc = tok_decode(tok, ids, n, flags, out, len, &len)) < 0)
		goto out;
	fwrite(out, 1, len, stdout);
	if (isatty(STDOUT_FILENO))
		putchar('\n');
out:
	free(ids);
	free(out);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "no-bos", no_argument, NULL, 'b' }, { "special", no_argument, NULL, 's' },
		{ "decode", no_argument, NULL, 'd' }, { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	bool bos = true, special = false, dec = false;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'b': bos = false; break;
		case 's': special = true; break;
		case 'd': dec = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc || argc - optind > 2) {
		fprintf(stderr, "inferd-tokenize: expected MODEL.gguf [TEXT|-]\n");
		usage(stderr);
		return 2;
	}
	const char *path = argv[optind];
	const char *arg = optind + 1 < argc ? argv[optind + 1] : "-";

	char err[256] = "";
	struct gguf *g = NULL;
	struct tokenizer *tok = NULL;
	char *input = NULL;
	size_t len;
	int ret = 1, rc;

	if ((rc = gguf_open(path, &g, err, sizeof err)) < 0) {
		fprintf(stderr, "inferd-tokenize: %s\n", err);
		goto out;
	}
	if ((rc = tok_new_from_gguf(g, &tok, err, sizeof err)) < 0) {
		fprintf(stderr, "inferd-tokenize: %s: %s\n", path, err);
		goto out;
	}
	if (strcmp(arg, "-") == 0) {
		if ((rc = read_all(stdin, &input, &len)) < 0) {
			fprintf(stderr, "inferd-tokenize: reading standard input: %s\n", strerror(-rc));
			goto out;
		}
	} else {
		len = strlen(arg);
		input = strdup(arg);
		if (input == NULL)
			goto out;
	}
	rc = dec ? decode(tok, input, special) : encode(tok, input, len, bos, special);
	if (rc < 0) {
		if (rc != -EINVAL)
			fprintf(stderr, "inferd-tokenize: %s\n", strerror(-rc));
		goto out;
	}
	ret = fflush(stdout) == 0 ? 0 : 1;
out:
	free(input);
	tok_free(tok);
	gguf_free(g);
	return ret;
}
