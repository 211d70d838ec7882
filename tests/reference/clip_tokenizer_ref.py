#!/usr/bin/python3
"""Independent reference for inferd's CLIP tokenizer (engine/diffusion/clip_tokenizer.h).

Pure Python (standard library only), written from the published CLIP BPE algorithm and HF
`tokenizers`' CLIP configuration: NFC, Unicode lower-casing, whitespace runs -> ' ', the CLIP
pre-tokenizer (scanned by hand with Unicode categories instead of a regex engine), GPT-2's
byte-to-unicode map, '</w>' on the last symbol of a word, merges by rank.

  clip_tokenizer_ref.py make-vocab DIR [--merges N]
      trains a small byte-level BPE (CLIP layout: 256 byte symbols, their '</w>' variants,
      merged symbols, <|startoftext|>, <|endoftext|>) and writes DIR/vocab.json, DIR/merges.txt
  clip_tokenizer_ref.py encode DIR CORPUS OUT
      encodes every corpus line (no BOS/EOS, no truncation) and writes OUT as records of
      u32 n_bytes, UTF-8 text, u32 n_ids, i32 ids (little-endian)

  clip_tokenizer_ref.py hf-check VENV CORPUS
      checks this reference against HF `tokenizers` (pinned; installed into the venv VENV on
      first use) built with CLIP's configuration, on a generated vocabulary; exit 77 (skip)
      when the package cannot be installed (offline)

Corpus lines: escapes \\n \\t \\r \\\\ \\u{HEX}; '#' lines and blank lines are comments; \\e is the
empty string.
"""
import collections
import json
import os
import struct
import subprocess
import sys
import tempfile
import unicodedata

SPECIALS = ("<|startoftext|>", "<|endoftext|>")
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
# Unicode White_Space (the \s of the CLIP regex)
WS = set(map(chr, list(range(0x09, 0x0E)) + [0x20, 0x85, 0xA0, 0x1680] + list(range(0x2000, 0x200B))
             + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]))


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


B2U = bytes_to_unicode()


def normalize(s):
    s = unicodedata.normalize("NFC", s).lower()
    out, pending = [], False
    for c in s:
        if c in WS:
            pending = bool(out)
            continue
        if pending:
            out.append(" ")
        pending = False
        out.append(c)
    return "".join(out)


def is_l(c):
    return unicodedata.category(c)[0] == "L"


def is_n(c):
    return unicodedata.category(c)[0] == "N"


def pre_tokenize(s):
    """The CLIP regex alternation, leftmost alternative first at each position."""
    i, words = 0, []
    while i < len(s):
        hit = next((w for w in SPECIALS + CONTRACTIONS if s.startswith(w, i)), None)
        if hit is not None:
            j = i + len(hit)
        elif is_l(s[i]):
            j = i
            while j < len(s) and is_l(s[j]):
                j += 1
        elif is_n(s[i]):
            j = i + 1
        elif s[i] in WS:
            i += 1
            continue
        else:
            j = i
            while j < len(s) and not (is_l(s[j]) or is_n(s[j]) or s[j] in WS):
                j += 1
        words.append(s[i:j])
        i = j
    return words


def word_symbols(word):
    chars = [B2U[b] for b in word.encode("utf-8")]
    return chars[:-1] + [chars[-1] + "</w>"]


def bpe(symbols, ranks):
    word = list(symbols)
    while len(word) > 1:
        pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(word):
            if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                merged.append(word[i] + word[i + 1])
                i += 2
            else:
                merged.append(word[i])
                i += 1
        word = merged
    return word


def split_specials(s):
    """Special-token text is taken out before the pre-tokenizer (HF added tokens)."""
    parts, i = [], 0
    while True:
        hits = [(s.find(sp, i), sp) for sp in SPECIALS if s.find(sp, i) >= 0]
        if not hits:
            return parts + [s[i:]]
        j, sp = min(hits)
        parts += [s[i:j], sp]
        i = j + len(sp)


def encode(text, vocab, ranks):
    ids = []
    for part in split_specials(normalize(text)):
        if part in SPECIALS:
            ids.append(vocab[part])
            continue
        for w in pre_tokenize(part):
            if w in SPECIALS:
                ids.append(vocab[w])
                continue
            for sym in bpe(word_symbols(w), ranks):
                ids.append(vocab.get(sym, vocab["<|endoftext|>"]))
    return ids


TRAIN = """a photograph of an astronaut riding a horse on the moon, highly detailed, 4k
the quick brown fox jumps over the lazy dog. it's a beautiful day in the neighbourhood!
portrait of a cat wearing a hat, oil painting, trending on artstation, by greg rutkowski
they're here; we've seen what they'll do and i'm sure you'd like it. don't stop
caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00e5ngstr\u00f6m stra\u00dfe \u00fcber \u00e7a va
\u0440\u0443\u0441\u0441\u043a\u0438\u0439 \u0442\u0435\u043a\u0441\u0442 \u03b5\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac
\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \ud55c\uad6d\uc5b4 landscape mountains river sunset
"""


def train(n_merges):
    words = collections.Counter()
    for line in TRAIN.splitlines():
        for w in pre_tokenize(normalize(line)):
            if w not in SPECIALS:
                words[tuple(word_symbols(w))] += 1
    chars = [B2U[b] for b in range(256)]
    order = sorted(range(256), key=lambda b: ord(B2U[b]))
    vocab_list = [chars[b] for b in order] + [chars[b] + "</w>" for b in order]
    seen = set(vocab_list)
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for i in range(len(w) - 1):
                pairs[(w[i], w[i + 1])] += c
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        merges.append(best)
        tok = best[0] + best[1]
        if tok not in seen:
            seen.add(tok)
            vocab_list.append(tok)
        new = collections.Counter()
        for w, c in words.items():
            new[tuple(bpe(w, {best: 0}))] += c
        words = new
    vocab_list += list(SPECIALS)
    return {t: i for i, t in enumerate(vocab_list)}, merges


def unescape(line):
    if line == "\\e":
        return ""
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            n = line[i + 1]
            if n in "ntr\\":
                out.append({"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[n])
                i += 2
                continue
            if n == "u" and line[i + 2] == "{":
                j = line.index("}", i)
                out.append(chr(int(line[i + 3:j], 16)))
                i = j + 1
                continue
        out.append(c)
        i += 1
    return "".join(out)


def load(folder):
    with open(folder + "/vocab.json", encoding="utf-8") as f:
        vocab = json.load(f)
    ranks = {}
    with open(folder + "/merges.txt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    for ln in lines[1:]:
        if ln:
            a, b = ln.split(" ")
            ranks.setdefault((a, b), len(ranks))
    return vocab, ranks


HF_PIN = "tokenizers==0.20.3"


def hf_tokenizer(vocab, merges):
    from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers
    bpe = models.BPE(vocab=vocab, merges=merges, unk_token="<|endoftext|>",
                     continuing_subword_prefix="", end_of_word_suffix="</w>", fuse_unk=False)
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    pattern = (r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]"
               r"|[^\s\p{L}\p{N}]+")
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=True) for t in SPECIALS])
    return tok


def hf_check(venv, corpus):
    try:
        import tokenizers  # noqa: F401
    except ImportError:
        venv = os.path.abspath(venv)
        py = os.path.join(venv, "bin", "python")
        failed = venv + ".failed"
        recent = os.path.exists(failed) and os.path.getmtime(failed) > __import__("time").time() - 600
        if os.path.abspath(sys.prefix) != venv and not os.path.exists(venv + "/.ok") and not recent:
            ok = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True).returncode == 0
            ok = ok and subprocess.run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                        "--timeout", "15", "--retries", "1", HF_PIN],
                                       capture_output=True).returncode == 0
            open(venv + "/.ok" if ok else failed, "w").close()
        if os.path.abspath(sys.prefix) != venv and os.path.exists(venv + "/.ok"):
            os.execv(py, [py, os.path.abspath(__file__), "hf-check", venv, corpus])
        print("clip_tokenizer_ref: cannot install %s (offline?): HF check skipped" % HF_PIN)
        return 77
    with tempfile.TemporaryDirectory() as d:
        main(["make-vocab", d])
        vocab, ranks = load(d)
    merges = sorted(ranks, key=ranks.get)
    tok = hf_tokenizer(vocab, merges)
    with open(corpus, encoding="utf-8") as f:
        cases = [unescape(ln) for ln in f.read().split("\n") if ln and not ln.startswith("#")]
    bad = 0
    for text in cases:
        hf, me = tok.encode(text, add_special_tokens=False).ids, encode(text, vocab, ranks)
        if hf != me:
            bad += 1
            print("differs: %r\n  HF  %s\n  ref %s" % (text, hf, me))
    print("%d cases, %d differ from HF tokenizers %s" % (len(cases), bad, tokenizers_version()))
    return 1 if bad else 0


def tokenizers_version():
    import tokenizers
    return tokenizers.__version__


def main(argv):
    if len(argv) == 3 and argv[0] == "hf-check":
        return hf_check(argv[1], argv[2])
    if len(argv) >= 2 and argv[0] == "make-vocab":
        n = int(argv[3]) if len(argv) >= 4 and argv[2] == "--merges" else 400
        vocab, merges = train(n)
        with open(argv[1] + "/vocab.json", "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)
        with open(argv[1] + "/merges.txt", "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for a, b in merges:
                f.write(a + " " + b + "\n")
        return 0
    if len(argv) == 4 and argv[0] == "encode":
        vocab, ranks = load(argv[1])
        with open(argv[2], encoding="utf-8") as f:
            cases = [unescape(ln) for ln in f.read().split("\n") if ln and not ln.startswith("#")]
        with open(argv[3], "wb") as out:
            for text in cases:
                b = text.encode("utf-8")
                ids = encode(text, vocab, ranks)
                out.write(struct.pack("<I", len(b)) + b + struct.pack("<I", len(ids)))
                out.write(struct.pack("<%di" % len(ids), *ids))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
