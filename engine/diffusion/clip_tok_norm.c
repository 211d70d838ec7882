/* CLIP text clean-up before the pre-tokenizer regex, and the byte-level character map. */
#include "clip_tok-internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

size_t clip_byte_char(int b, char *s)
{
	/* Printable Latin-1 bytes stand for themselves; the others (controls, space, DEL, NBSP,
	 * soft hyphen) are numbered from U+0100 in byte order, as GPT-2's bytes_to_unicode. */
	uint32_t cp;
	if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) {
		cp = (uint32_t)b;
	} else {
		int k = b <= 32 ? b : b <= 160 ? 33 + (b - 127) : 33 + 34;
		cp = 256 + (uint32_t)k;
	}
	if (cp < 0x80) {
		s[0] = (char)cp;
		return 1;
	}
	s[0] = (char)(0xc0 | (cp >> 6));
	s[1] = (char)(0x80 | (cp & 0x3f));
	return 2;
}

/* Decodes one code point at s[0..n) (n >= 1); invalid sequences give U+FFFD over one byte. */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *adv)
{
	uint32_t c = s[0];
	size_t need;
	uint32_t min;
	*adv = 1;
	if (c < 0x80)
		return c;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 1; min = 0x80; c &= 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 2; min = 0x800; c &= 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3; min = 0x10000; c &= 0x07;
	} else {
		return 0xfffd;
	}
	if (n < need + 1)
		return 0xfffd;
	for (size_t i = 1; i <= need; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0xfffd;
		c = c << 6 | (s[i] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0xfffd;
	*adv = need + 1;
	return c;
}

static size_t utf8_put(uint32_t c, char *o)
{
	if (c < 0x80) {
		o[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		o[0] = (char)(0xc0 | c >> 6);
		o[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		o[0] = (char)(0xe0 | c >> 12);
		o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		o[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | c >> 18);
	o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
	o[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

/* Unicode White_Space (what PCRE2's \s matches with UCP). */
static bool is_space(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
	       c == 0x205f || c == 0x3000;
}

/* Simple lower-case mapping of the scripts prompts mostly use. */
static uint32_t lower(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 32 : c;
	if (c >= 0xc0 && c <= 0xde && c != 0xd7)
		return c + 32;
	if (c >= 0x100 && c <= 0x17f) { /* Latin Extended-A: mostly (upper, lower) pairs */
		if (c == 0x130)
			return 'i';
		if (c == 0x178)
			return 0xff;
		if ((c <= 0x137 || (c >= 0x14a && c <= 0x177)) && c % 2 == 0)
			return c + 1;
		if (((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e)) && c % 2 == 1)
			return c + 1;
		return c;
	}
	if (c >= 0x370 && c <= 0x3ff) { /* Greek */
		if (c == 0x386)
			return 0x3ac;
		if (c >= 0x388 && c <= 0x38a)
			return c + 37;
		if (c == 0x38c)
			return 0x3cc;
		if (c == 0x38e || c == 0x38f)
			return c + 63;
		if (c >= 0x391 && c <= 0x3ab && c != 0x3a2)
			return c + 32;
		return c;
	}
	if (c >= 0x400 && c <= 0x52f) { /* Cyrillic */
		if (c <= 0x40f)
			return c + 80;
		if (c <= 0x42f)
			return c + 32;
		if (c == 0x4c0)
			return 0x4cf;
		if (((c >= 0x460 && c <= 0x481) || (c >= 0x48a && c <= 0x4bf) || c >= 0x4d0) &&
		    c % 2 == 0)
			return c + 1;
		if (c >= 0x4c1 && c <= 0x4cd && c % 2 == 1)
			return c + 1;
		return c;
	}
	if (c >= 0x531 && c <= 0x556) /* Armenian */
		return c + 48;
	if (c >= 0x1e00 && c <= 0x1eff) { /* Latin Extended Additional */
		if (c == 0x1e9e)
			return 0xdf;
		if ((c <= 0x1e95 || c >= 0x1ea0) && c % 2 == 0)
			return c + 1;
		return c;
	}
	if (c >= 0x2160 && c <= 0x216f) /* Roman numerals */
		return c + 16;
	if (c >= 0x24b6 && c <= 0x24cf) /* circled Latin */
		return c + 26;
	if (c >= 0xff21 && c <= 0xff3a) /* fullwidth Latin */
		return c + 32;
	return c;
}

/* Composite of a + b under NFC's canonical composition, or 0. */
static uint32_t compose(uint32_t a, uint32_t b)
{
	if (a >= 0x1100 && a <= 0x1112 && b >= 0x1161 && b <= 0x1175) /* Hangul L + V */
		return 0xac00 + ((a - 0x1100) * 21 + (b - 0x1161)) * 28;
	if (a >= 0xac00 && a <= 0xd7a3 && (a - 0xac00) % 28 == 0 && b >= 0x11a8 && b <= 0x11c2)
		return a + (b - 0x11a7);                                   /* Hangul LV + T */
	if (b < 0x300)
		return 0; /* every other second part is a mark or a vowel sign above U+0300 */
	size_t lo = 0, hi = clip_nfc_n_pairs;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const uint32_t *p = clip_nfc_pairs[mid];
		if (p[0] < a || (p[0] == a && p[1] < b))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < clip_nfc_n_pairs && clip_nfc_pairs[lo][0] == a && clip_nfc_pairs[lo][1] == b
	       ? clip_nfc_pairs[lo][2] : 0;
}

int clip_tok_normalize(const char *text, size_t len, char **out, size_t *out_len)
{
	/* Worst case: every byte an invalid one, 3 bytes of U+FFFD each. */
	char *o = len < SIZE_MAX / 4 ? malloc(3 * len + 1) : NULL;
	size_t n = 0;
	bool pending_space = false;
	uint32_t held = 0; /* the last character, held back while marks may compose with it */
	bool holding = false;
	if (o == NULL)
		return -ENOMEM;
	for (size_t i = 0;;) {
		const bool end = i >= len;
		uint32_t c = 0;
		if (!end) {
			size_t adv;
			c = utf8_next((const unsigned char *)text + i, len - i, &adv);
			i += adv;
		}
		uint32_t comp = holding && !end ? compose(held, c) : 0;
		if (comp != 0) {
			held = comp;
			continue;
		}
		if (holding) {
			if (pending_space)
				o[n++] = ' ';
			pending_space = false;
			n += utf8_put(lower(held), o + n);
			holding = false;
		}
		if (end)
			break;
		if (is_space(c)) {
			pending_space = n > 0;
		} else {
			held = c;
			holding = true;
		}
	}
	o[n] = 0;
	*out = o;
	*out_len = n;
	return 0;
}
