#!/usr/bin/python3
"""Independent reference check of inferd's tokenizers (engine/tokenizer/).

Reads a GGUF file's tokenizer.ggml.* keys with its own parser and encodes
every string of a corpus two ways, comparing token for token with the C
implementation (driven through `inferd-tokenize`):

  * SentencePiece-style ("llama"): the published SentencePiece BPE algorithm
    written here from its description, deliberately naive (rescan every
    adjacent pair, merge the one whose concatenation is the highest-scoring
    token, leftmost on ties; characters that are no token fall back to
    <0xXX> byte tokens, else <unk>), with the leading-space rule
    (U+2581 prefix, spaces -> U+2581) and SentencePiece's decoding.
  * byte-level BPE ("gpt2"): HF `tokenizers` (the accepted reference) built
    from the file's tokens and merges, with the ByteLevel pre-tokenizer
    (pre = default/gpt2) or Split(regex, isolated) + ByteLevel (llama-bpe,
    qwen2) and the ByteLevel decoder. `tokenizers` takes str, so strings with
    invalid UTF-8 are skipped for BPE (the C side tokenizes them as bytes).

Each string is checked for: encode without and with parse_special (BOS as
the file says), decode of the C ids (C vs reference), and the round trip
decode(encode(s)) == s where the tokenizer preserves it (see the README for
the exceptions). With --pre NAME a vocab-only copy of the file with that
tokenizer.ggml.pre is written and used (and so tested).

usage: tokenizer_ref.py --tokenize PATH (--gguf PATH | --mkmodel PATH --tokenizer spm|bpe)
                        --corpus PATH [--pre NAME] [--augment]
Exit status 0 when all checks pass, 1 on a mismatch, 77 (skip) when the
BPE reference library is not installed.
"""
import argparse
import os
import re
import struct
import subprocess
import sys
import tempfile

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}
CONTROL, UNKNOWN, USER_DEFINED, BYTE = 3, 2, 4, 6

# ---- GGUF metadata: read, and write vocab-only copies ------------------------------------


def read_metadata(path):
    """Returns {key: (type, value)}; strings as bytes, arrays as (elem type, list)."""
    buf = open(path, "rb").read()
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from(fmt, buf, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    def string():
        nonlocal pos
        n = take("<Q")
        s = buf[pos:pos + n]
        pos += n
        return s

    def value(t):
        if t == STR:
            return string()
        if t == ARR:
            et, n = take("<I"), take("<Q")
            return (et, [value(et) for _ in range(n)])
        return take(SCALAR[t])

    if buf[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    pos = 4
    take("<I")
    take("<Q")  # tensors
    n_kv = take("<Q")
    kv = {}
    for _ in range(n_kv):
        k = string().decode()
        t = take("<I")
        kv[k] = (t, value(t))
    return kv


def write_vocab_only(kv, path):
    """A GGUF v3 file with only the tokenizer.* keys of kv (no tensors)."""
    out = [b"GGUF", struct.pack("<IQ", 3, 0)]
    keys = [k for k in kv if k.startswith("tokenizer.")]
    out.append(struct.pack("<Q", len(keys)))

    def val(t, v):
        if t == STR:
            return struct.pack("<Q", len(v)) + v
        if t == ARR:
            et, items = v
            return struct.pack("<IQ", et, len(items)) + b"".join(val(et, x) for x in items)
        return struct.pack(SCALAR[t], v)

    for k in keys:
        t, v = kv[k]
        kb = k.encode()
        out += [struct.pack("<Q", len(kb)), kb, struct.pack("<I", t), val(t, v)]
    with open(path, "wb") as f:
        f.write(b"".join(out))


class Vocab:
    def __init__(self, kv):
        get = lambda k, d=None: kv[k][1] if k in kv else d
        self.model = get("tokenizer.ggml.model").decode()
        self.pre = get("tokenizer.ggml.pre", b"default").decode()
        self.tokens = get("tokenizer.ggml.tokens")[1]
        n = len(self.tokens)
        self.scores = get("tokenizer.ggml.scores", (F32, [0.0] * n))[1]
        self.types = get("tokenizer.ggml.token_type", (I32, [1] * n))[1]
        self.merges = [m for m in get("tokenizer.ggml.merges", (STR, []))[1]]
        spm = self.model == "llama"

        def tid(k, d):
            v = get(k, d)
            return v if v is not None and 0 <= v < n else None

        self.bos = tid("tokenizer.ggml.bos_token_id", 1 if spm else None)
        self.eos = tid("tokenizer.ggml.eos_token_id", 2 if spm else None)
        self.unk = tid("tokenizer.ggml.unknown_token_id", 0 if spm else None)
        self.add_bos = bool(get("tokenizer.ggml.add_bos_token", spm)) and self.bos is not None
        self.add_eos = bool(get("tokenizer.ggml.add_eos_token", False)) and self.eos is not None
        self.space_prefix = bool(get("tokenizer.ggml.add_space_prefix", spm))
        self.ids = {}
        for i, t in enumerate(self.tokens):
            self.ids.setdefault(t, i)
        for i in (self.bos, self.eos):
            if i is not None and self.types[i] == 1:
                self.types[i] = CONTROL
        if self.unk is not None and self.types[self.unk] == 1:
            self.types[self.unk] = UNKNOWN

    def specials(self, parse_special):
        ok = (CONTROL, UNKNOWN, USER_DEFINED) if parse_special else (USER_DEFINED,)
        return {t: i for i, t in enumerate(self.tokens) if t and self.types[i] in ok}


def split_special(text, specials):
    """Leftmost-longest split: list of bytes fragments and int ids."""
    out, start, i = [], 0, 0
    by_len = sorted(specials, key=len, reverse=True)
    while i < len(text):
        hit = next((s for s in by_len if text.startswith(s, i)), None)
        if hit is None:
            i += 1
            continue
        if i > start:
            out.append(text[start:i])
        out.append(specials[hit])
        i += len(hit)
        start = i
    if start < len(text):
        out.append(text[start:])
    return out

# ---- SentencePiece reference ------------------------------------------------------------


def utf8_chars(b):
    """Characters of b; every byte that does not start a valid sequence is its own."""
    out, i = [], 0
    while i < len(b):
        c = b[i]
        n = 1 if c < 0x80 else 2 if 0xc2 <= c < 0xe0 else 3 if 0xe0 <= c < 0xf0 else \
            4 if 0xf0 <= c < 0xf5 else 1
        if n > 1:
            try:
                if len(b[i:i + n]) != n:
                    raise ValueError
                b[i:i + n].decode("utf-8")
            except ValueError:
                n = 1
        out.append(b[i:i + n])
        i += n
    return out


LOWER_BLOCK = "\u2581".encode()


def spm_fragment(v, s):
    syms = utf8_chars(s)
    while True:
        best = None
        for k in range(len(syms) - 1):
            tid = v.ids.get(syms[k] + syms[k + 1])
            if tid is not None and (best is None or v.scores[tid] > best[0]):
                best = (v.scores[tid], k)
        if best is None:
            break
        k = best[1]
        syms[k:k + 2] = [syms[k] + syms[k + 1]]
    out = []
    for s in syms:
        if s in v.ids:
            out.append(v.ids[s])
            continue
        bt = [v.ids.get(b"<0x%02X>" % c) for c in s]
        if all(x is not None for x in bt):
            out += bt
        elif v.unk is not None:
            out.append(v.unk)
    return out


def spm_encode(v, text, parse_special):
    out = [v.bos] if v.add_bos else []
    for frag in split_special(text, v.specials(parse_special)):
        if isinstance(frag, int):
            out.append(frag)
            continue
        s = frag.replace(b" ", LOWER_BLOCK)
        if v.space_prefix:  # every raw fragment starts the text or follows a special token
            s = LOWER_BLOCK + s
        out += spm_fragment(v, s)
    if v.add_eos:
        out.append(v.eos)
    return out


def spm_decode(v, ids):
    """SentencePiece decoding; the dummy-prefix space is removed from the whole
    text once (as HF's Strip(left=1) decoder of llama tokenizers does)."""
    out = b""
    for i in ids:
        t, ty = v.tokens[i], v.types[i]
        if ty in (CONTROL, 5):
            p = b""
        elif ty == UNKNOWN:
            p = "\u2585".encode()
        elif ty == BYTE and re.fullmatch(rb"<0x[0-9A-Fa-f]{2}>", t):
            p = bytes([int(t[3:5], 16)])
        elif ty == USER_DEFINED:
            p = t
        else:
            p = t.replace(LOWER_BLOCK, b" ")
        out += p
    return out[1:] if v.space_prefix and out[:1] == b" " else out

# ---- byte-level BPE reference (HF tokenizers) ---------------------------------------------


PRE_REGEX = {
    "llama-bpe": r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|"
                 r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    "qwen2": r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|"
             r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
}


def hf_tokenizer(v, parse_special):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers
    vocab = {t.decode(): i for t, i in v.ids.items()}
    merges = []
    for m in v.merges:
        m = m.decode()
        k = m.find(" ", 1)
        merges.append((m[:k], m[k + 1:]))
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=v.pre == "llama-bpe"))
    if v.pre in PRE_REGEX:
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PRE_REGEX[v.pre]), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    added = [AddedToken(t.decode(), special=True, normalized=False)
             for t in v.specials(parse_special)]
    if added:
        tk.add_special_tokens(added)
    return tk


def bpe_encode(tks, v, text, parse_special):
    ids = tks[parse_special].encode(text.decode(), add_special_tokens=False).ids
    return ([v.bos] if v.add_bos else []) + ids + ([v.eos] if v.add_eos else [])

def augment(kv):
    """Adds tokens and merges over digits, whitespace, punctuation, case and a few
    letters (two rounds of pairs), so that where the pre-tokenizers split the text
    differently the ids differ too. Appended after the existing merges (lower
    priority) and before the last token (<|endoftext|> keeps being last)."""
    toks = kv["tokenizer.ggml.tokens"][1][1]
    merges = kv["tokenizer.ggml.merges"][1][1]
    types = kv["tokenizer.ggml.token_type"][1][1]
    scores = kv["tokenizer.ggml.scores"][1][1]
    last = (toks.pop(), types.pop(), scores.pop())
    have = set(toks)
    base = [c.encode() for c in "0123456789ĠĊĉč'.!,?tTsSeh"]
    rnd = base
    for _ in range(2):
        new = []
        for l in rnd:
            for r in base:
                m = l + r
                if m not in have:
                    have.add(m)
                    toks.append(m)
                    types.append(1)
                    scores.append(0.0)
                    merges.append(l + b" " + r)
                    new.append(m)
        rnd = new[:60]
    toks.append(last[0])
    types.append(last[1])
    scores.append(last[2])
    n = len(toks)
    for k in ("bos", "eos", "padding"):
        key = f"tokenizer.ggml.{k}_token_id"
        if key in kv:
            kv[key] = (kv[key][0], n - 1)


# ---- corpus and driver --------------------------------------------------------------------


def read_corpus(path):
    out = []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        b, i = bytearray(), 0
        while i < len(line):
            c = line[i]
            if c != "\\":
                b += c.encode()
                i += 1
                continue
            e = line[i + 1]
            if e == "x":
                b.append(int(line[i + 2:i + 4], 16))
                i += 4
            elif e == "u":
                j = line.index("}", i)
                b += chr(int(line[i + 3:j], 16)).encode()
                i = j + 1
            else:
                b += {"n": b"\n", "t": b"\t", "r": b"\r", "\\": b"\\", "e": b""}[e]
                i += 2
        out.append(bytes(b))
    return out


def random_strings(n):
    """n strings drawn (fixed seed) from a pool mixing ASCII words, whitespace,
    digits, punctuation, contractions, accents, CJK, emoji and special-token text."""
    import random
    rnd = random.Random(20261125)
    pool = ["the", "little", "Lily", " ", "  ", "\n", "\t", "\r\n", "0", "42", "12345", ".", ",",
            "!?", "'s", "'LL", "é", "ñ", "日", "本語", "😀", "👍🏽", "\u0301", "ש", "م", "<s>",
            "</s>", "<|endoftext|>", "a", "T", "xyz", "\u00a0", "\u3000", "__", "--", "(", ")"]
    return [("".join(rnd.choice(pool) for _ in range(rnd.randint(1, 12)))).encode()
            for _ in range(n)]


def run(tool, args, data):
    p = subprocess.run([tool] + args, input=data, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(args)}: exit {p.returncode}: {p.stderr.decode()}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenize", required=True)
    ap.add_argument("--gguf", help="the GGUF file (or --mkmodel)")
    ap.add_argument("--mkmodel", help="generate the file with this inferd-mkmodel")
    ap.add_argument("--tokenizer", default="spm", help="with --mkmodel: spm or bpe")
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--pre")
    ap.add_argument("--random", type=int, default=60,
                    help="also check this many seeded random strings (default 60)")
    ap.add_argument("--augment", action="store_true",
                    help="BPE: add merges across digits, whitespace and punctuation first")
    a = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    if a.mkmodel:
        a.gguf = os.path.join(tmp.name, f"gen-{a.tokenizer}.gguf")
        subprocess.run([a.mkmodel, "llm", "--out", a.gguf, "--tokenizer", a.tokenizer,
                        "--vocab", "2000", "--dim", "32", "--layers", "1", "--heads", "2",
                        "--ffn", "32"], check=True, capture_output=True)
    if not a.gguf or not os.path.exists(a.gguf):
        print(f"SKIP: {a.gguf} is absent")
        return 77
    kv = read_metadata(a.gguf)
    path = a.gguf
    if a.augment:
        augment(kv)
    if a.pre or a.augment:
        kv["tokenizer.ggml.pre"] = (STR, (a.pre or "default").encode())
        path = os.path.join(tmp.name, "vocab.gguf")
        write_vocab_only(kv, path)
    v = Vocab(kv)
    bpe = v.model == "gpt2"
    if bpe:
        try:
            tks = {False: hf_tokenizer(v, False), True: hf_tokenizer(v, True)}
        except ImportError:
            print("SKIP: the Python 'tokenizers' package is not installed "
                  "(tests/reference/tokenizer_venv.sh could not install it)")
            return 77

    corpus = read_corpus(a.corpus) + random_strings(a.random)
    checked = failed = skipped = 0
    for text in corpus:
        valid = True
        try:
            text.decode("utf-8")
        except UnicodeDecodeError:
            valid = False
        if bpe and not valid:
            skipped += 1
            continue
        for special in (False, True):
            args = (["--special"] if special else []) + [path, "-"]
            got = [int(x) for x in run(a.tokenize, args, text).split()]
            want = bpe_encode(tks, v, text, special) if bpe else spm_encode(v, text, special)
            checked += 1
            if got != want:
                failed += 1
                print(f"MISMATCH encode special={special} {text!r}\n  C:   {got}\n  ref: {want}")
                continue
            # decode of the ids: C against the reference
            dec = run(a.tokenize, ["--decode", path, "-"], " ".join(map(str, got)).encode())
            if bpe:
                ref = tks[True].decode(got, skip_special_tokens=True)
                ok = dec.decode("utf-8", errors="replace") == ref
            else:
                ref = spm_decode(v, got)
                ok = dec == ref
            if not ok:
                failed += 1
                print(f"MISMATCH decode {text!r}\n  C:   {dec!r}\n  ref: {ref!r}")
                continue
            # round trip (exceptions: literal U+2581 in SPM text decodes to a space;
            # with parse_special the control tokens decode to nothing)
            if not special and LOWER_BLOCK not in text and dec != text:
                failed += 1
                print(f"ROUND TRIP {text!r} -> {dec!r}")
    name = os.path.basename(a.gguf) + (f" (pre={a.pre})" if a.pre else "")
    print(f"{name}: {checked - failed}/{checked} encodings of {len(corpus)} strings match"
          f" the reference, {skipped} skipped (invalid UTF-8 for BPE)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
