#!/usr/bin/python3
"""Independent check of inferd-mkmodel's GGUF output.

This script has its own GGUF parser and its own numpy dequantizers (written
from the GGUF/GGML format description, sharing no code with engine/), and
checks a generated model:

  * header, every metadata value against the options it was generated with;
  * the tokenizer (sizes, unique tokens, SentencePiece byte tokens, BPE merges
    that concatenate to the token they create, in rank order);
  * tensor names, shapes (ne[0] = input features), types and aligned offsets
    inside the file;
  * tensor data: numpy's dequantization equals the C reader's
    (`inferd-gguf-dump --tensor NAME --values`) exactly, lies within the
    format's error bound of the f32 model generated with the same seed, and
    has the documented scales (embeddings ~N(0,1), linear ~N(0,1/fan_in),
    norms near 1).

usage: gguf_check.py --mkmodel PATH --dump PATH
                     [--dtype f32|f16|bf16|q8_0|q4_0|q4_k|q6_k|q4_k_m]
                     [--tokenizer spm|bpe] [--keep DIR]
The k-quant dtypes (q4_k, q6_k, q4_k_m) are checked on a model with --dim 256
--ffn 512 (their blocks are 256 elements), the others with --dim 64 --ffn 96.
Exit status 0 when every check passes, 1 otherwise.
"""
import argparse
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 8: "Q8_0", 12: "Q4_K", 14: "Q6_K", 30: "BF16"}
# metadata value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
SCALAR = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
          BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}

OPTS = dict(dim=64, layers=2, heads=4, kv_heads=2, ffn=96, vocab=400, context=128, seed=11)
K_QUANTS = ("q4_k", "q6_k", "q4_k_m")
# --dtype -> (type of most 2-D weights, type of attn_v / ffn_down / output, general.file_type
# = llama.cpp's LLAMA_FTYPE_*); q4_k_m is llama.cpp's Q4_K_M mix as mkmodel simplifies it
DTYPES = {"f32": (0, 0, 0), "f16": (1, 1, 1), "bf16": (30, 30, 32), "q8_0": (8, 8, 7),
          "q4_0": (2, 2, 2), "q4_k": (12, 12, 14), "q6_k": (14, 14, 18),
          "q4_k_m": (12, 14, 15)}


def set_opts(dtype):
    """The model size checked for dtype (k-quants need rows of 256)."""
    if dtype in K_QUANTS:
        OPTS.update(dim=256, ffn=512)


class Reader:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def string(self):
        n = self.take("<Q")
        if self.pos + n > len(self.buf):
            raise ValueError("string runs past the end")
        s = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return s.decode("utf-8")

    def value(self, t):
        if t in SCALAR:
            return self.take(SCALAR[t])
        if t == STR:
            return self.string()
        if t == ARR:
            et = self.take("<I")
            n = self.take("<Q")
            return [self.value(et) for _ in range(n)]
        raise ValueError("unknown value type %d" % t)


def parse_gguf(path):
    buf = open(path, "rb").read()
    r = Reader(buf)
    assert buf[:4] == b"GGUF", "bad magic"
    r.pos = 4
    version = r.take("<I")
    n_tensors = r.take("<Q")
    n_kv = r.take("<Q")
    kv, kv_types = {}, {}
    for _ in range(n_kv):
        key = r.string()
        t = r.take("<I")
        kv[key] = r.value(t)
        kv_types[key] = t
    tensors = {}
    order = []
    for _ in range(n_tensors):
        name = r.string()
        nd = r.take("<I")
        ne = [r.take("<Q") for _ in range(nd)]
        ttype = r.take("<I")
        off = r.take("<Q")
        tensors[name] = dict(ne=ne, type=ttype, offset=off)
        order.append(name)
    align = kv.get("general.alignment", 32)
    data_off = (r.pos + align - 1) // align * align
    return dict(buf=buf, version=version, kv=kv, kv_types=kv_types, tensors=tensors,
                order=order, alignment=align, data_offset=data_off)


# ---- numpy dequantization, from the block layouts ---------------------------------------

BLOCK = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 14: (256, 210),
         30: (1, 2)}


def f16(raw):
    return raw.copy().view("<f2").astype(np.float32)


def dequant_q4_k(raw):
    """Q4_K: f16 d, f16 dmin, u8 scales[12], u8 qs[128] per 256 elements: 8 sub-blocks
    of 32 with 6-bit scale sc and min m, x = d*sc*q - dmin*m. Sub-block j < 4: sc and
    m in the low 6 bits of scales[j] and scales[j+4]; j >= 4: low 4 bits in the
    nibbles of scales[j+4], top 2 bits in the top bits of scales[j-4] (sc) and
    scales[j] (m). Sub-blocks 2k and 2k+1: low and high nibbles of qs[32k..32k+31]."""
    b = raw.reshape(-1, 144)
    d, dmin = f16(b[:, 0:2]), f16(b[:, 2:4])
    s = b[:, 4:16].astype(np.int32)
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)], axis=1)
    m = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], axis=1)
    qs = b[:, 16:].reshape(-1, 4, 1, 32)
    q = np.concatenate([qs & 15, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32)
    # float32 in the C reader's order: (d*sc)*q - dmin*m
    dsc = (d * sc.astype(np.float32))[:, :, None]
    mm = (dmin * m.astype(np.float32))[:, :, None]
    return (dsc * q - mm).reshape(-1)


def dequant_q6_k(raw):
    """Q6_K: u8 ql[128], u8 qh[64], i8 scales[16], f16 d per 256 elements; x = d*sc*(q-32),
    sc per 16 elements. Per half (128 elements: ql[64], qh[32]), element 32*quarter + l
    (l < 32) has low 4 bits from ql[l + 32*(quarter & 1)] (low nibble for quarters 0, 1,
    high for 2, 3) and high 2 bits from bits 2*quarter of qh[l]."""
    b = raw.reshape(-1, 210)
    d = f16(b[:, 208:210])
    sc = b[:, 192:208].view(np.int8).astype(np.float32)
    halves = []
    for h in range(2):
        ql = b[:, 64 * h:64 * h + 64].astype(np.int32)
        qh = b[:, 128 + 32 * h:128 + 32 * h + 32].astype(np.int32)
        quarters = [(ql[:, 0:32] & 15) | (((qh >> 0) & 3) << 4),
                    (ql[:, 32:64] & 15) | (((qh >> 2) & 3) << 4),
                    (ql[:, 0:32] >> 4) | (((qh >> 4) & 3) << 4),
                    (ql[:, 32:64] >> 4) | (((qh >> 6) & 3) << 4)]
        halves += quarters
    q = (np.concatenate(halves, axis=1) - 32).astype(np.float32)
    return ((d * np.repeat(sc, 16, axis=1)) * q).reshape(-1)


def tensor_bytes(info):
    blk, nbytes = BLOCK[info["type"]]
    n = int(np.prod(info["ne"]))
    assert info["ne"][0] % blk == 0
    return n // blk * nbytes


def dequant(g, name):
    info = g["tensors"][name]
    start = g["data_offset"] + info["offset"]
    raw = np.frombuffer(g["buf"], dtype=np.uint8, count=tensor_bytes(info), offset=start)
    t = info["type"]
    if t == 0:
        y = raw.view("<f4").astype(np.float32)
    elif t == 1:
        y = raw.view("<f2").astype(np.float32)
    elif t == 30:  # BF16: the top half of an f32
        y = (raw.view("<u2").astype(np.uint32) << 16).view("<f4")
    elif t == 12:
        y = dequant_q4_k(raw)
    elif t == 14:
        y = dequant_q6_k(raw)
    elif t == 8:  # Q8_0: f16 d, int8 q[32]; x = d * q
        blocks = raw.reshape(-1, 34)
        d = blocks[:, :2].copy().view("<f2").astype(np.float32)
        q = blocks[:, 2:].view(np.int8).astype(np.float32)
        y = (d * q).reshape(-1)
    elif t == 2:  # Q4_0: f16 d, u8 qs[16]; low nibbles = elements 0..15, high = 16..31
        blocks = raw.reshape(-1, 18)
        d = blocks[:, :2].copy().view("<f2").astype(np.float32)
        qs = blocks[:, 2:]
        q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32) - 8.0
        y = (d * q).reshape(-1)
    else:
        raise ValueError("no numpy dequantizer for type %d" % t)
    # GGUF ne[0] is the contiguous dimension: numpy shape is ne reversed
    return y.astype(np.float32).reshape(list(reversed(info["ne"])))


def block_scales(g, name):
    """|d| per block of 32, for the quantized types."""
    info = g["tensors"][name]
    start = g["data_offset"] + info["offset"]
    raw = np.frombuffer(g["buf"], dtype=np.uint8, count=tensor_bytes(info), offset=start)
    width = BLOCK[info["type"]][1]
    d = raw.reshape(-1, width)[:, :2].copy().view("<f2").astype(np.float64)
    return np.abs(d.reshape(-1))


# ---- checks -------------------------------------------------------------------------------

class Checker:
    def __init__(self):
        self.failures = 0
        self.passed = 0

    def check(self, cond, msg):
        if cond:
            self.passed += 1
        else:
            self.failures += 1
            print("FAIL: " + msg)


def check_metadata(c, g, dtype, tokenizer):
    kv = g["kv"]
    o = OPTS
    ftype = DTYPES[dtype][2]
    want = {
        "general.architecture": "llama",
        "general.alignment": 32,
        "general.file_type": ftype,
        "llama.context_length": o["context"],
        "llama.embedding_length": o["dim"],
        "llama.block_count": o["layers"],
        "llama.feed_forward_length": o["ffn"],
        "llama.attention.head_count": o["heads"],
        "llama.attention.head_count_kv": o["kv_heads"],
        "llama.rope.dimension_count": o["dim"] // o["heads"],
        "llama.rope.freq_base": 10000.0,
        "tokenizer.ggml.model": "gpt2" if tokenizer == "bpe" else "llama",
    }
    c.check(g["version"] == 3, "GGUF version %d" % g["version"])
    for k, v in want.items():
        c.check(kv.get(k) == v, "%s = %r, expected %r" % (k, kv.get(k), v))
    c.check(abs(kv.get("llama.attention.layer_norm_rms_epsilon", 0) - 1e-5) < 1e-9,
            "rms epsilon")
    c.check(isinstance(kv.get("general.name"), str), "general.name is a string")
    for k in ("general.alignment", "llama.block_count", "llama.embedding_length"):
        c.check(g["kv_types"].get(k) == U32, "%s is stored as uint32" % k)

    tokens = kv["tokenizer.ggml.tokens"]
    scores = kv["tokenizer.ggml.scores"]
    types = kv["tokenizer.ggml.token_type"]
    n = o["vocab"]
    c.check(len(tokens) == n and len(scores) == n and len(types) == n,
            "tokenizer arrays have %d/%d/%d entries, expected %d" %
            (len(tokens), len(scores), len(types), n))
    c.check(len(set(tokens)) == len(tokens), "tokens are unique")
    bos, eos = kv["tokenizer.ggml.bos_token_id"], kv["tokenizer.ggml.eos_token_id"]
    c.check(0 <= bos < n and 0 <= eos < n, "bos/eos in range")
    c.check(types[bos] == 3 and types[eos] == 3, "bos/eos are control tokens")
    if tokenizer == "spm":
        c.check(tokens[:3] == ["<unk>", "<s>", "</s>"], "SentencePiece specials")
        c.check(kv.get("tokenizer.ggml.unknown_token_id") == 0, "unknown token id")
        c.check(all(tokens[3 + b] == "<0x%02X>" % b and types[3 + b] == 6 for b in range(256)),
                "256 byte tokens <0x00>..<0xFF> of type 6")
        pieces = set(tokens[259:])
        c.check("\u2581the" in pieces, "word piece \u2581the")
        # every multi-character piece is reachable: its prefix is a piece too
        bad = [p for p in pieces if len(p) > 1 and p[:-1] not in pieces]
        c.check(not bad, "pieces whose prefix is missing: %r" % bad[:5])
        c.check(kv.get("tokenizer.ggml.add_bos_token") is True, "add_bos_token")
    else:
        merges = kv.get("tokenizer.ggml.merges", [])
        c.check(len(merges) == n - 257, "%d merges, expected %d" % (len(merges), n - 257))
        # GPT-2 byte-to-unicode: the first 256 tokens are the mapped bytes
        bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        cs = bs[:]
        k = 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + k)
                k += 1
        b2u = {b: chr(cp) for b, cp in zip(bs, cs)}
        c.check(tokens[:256] == [b2u[b] for b in range(256)], "byte-level base tokens")
        index = {t: i for i, t in enumerate(tokens)}
        for rank, m in enumerate(merges):
            left, right = m.split(" ")
            c.check(left in index and right in index, "merge %d parts are tokens" % rank)
            c.check(tokens[256 + rank] == left + right,
                    "merge %d %r creates token %d %r" % (rank, m, 256 + rank, tokens[256 + rank]))
            # rank order: a merge only uses tokens created by earlier merges
            c.check(index.get(left, 1 << 30) < 256 + rank and index.get(right, 1 << 30) < 256 + rank,
                    "merge %d uses a later token" % rank)
        c.check("\u0120the" in index, "word token \u0120the")


def expected_tensors(dtype):
    o = OPTS
    qt, hi = DTYPES[dtype][:2]
    dim, ffn, vocab = o["dim"], o["ffn"], o["vocab"]
    kv_dim = dim // o["heads"] * o["kv_heads"]
    t = {"token_embd.weight": ([dim, vocab], qt), "output_norm.weight": ([dim], 0),
         "output.weight": ([dim, vocab], hi)}
    for l in range(o["layers"]):
        p = "blk.%d." % l
        t[p + "attn_norm.weight"] = ([dim], 0)
        t[p + "attn_q.weight"] = ([dim, dim], qt)
        t[p + "attn_k.weight"] = ([dim, kv_dim], qt)
        t[p + "attn_v.weight"] = ([dim, kv_dim], hi)
        t[p + "attn_output.weight"] = ([dim, dim], qt)
        t[p + "ffn_norm.weight"] = ([dim], 0)
        t[p + "ffn_gate.weight"] = ([dim, ffn], qt)
        t[p + "ffn_up.weight"] = ([dim, ffn], qt)
        t[p + "ffn_down.weight"] = ([ffn, dim], hi)
    return t


def c_values(dump, path, name):
    out = subprocess.run([dump, "--tensor", name, "--values", path], check=True,
                         capture_output=True, text=True).stdout
    return np.array([float(x) for x in out.split()], dtype=np.float32)


def check_tensors(c, g, ref, dtype, dump, path):
    want = expected_tensors(dtype)
    c.check(set(g["tensors"]) == set(want), "tensor names: extra %r, missing %r" %
            (sorted(set(g["tensors"]) - set(want)), sorted(set(want) - set(g["tensors"]))))
    for name, (ne, ttype) in want.items():
        info = g["tensors"].get(name)
        if info is None:
            continue
        c.check(info["ne"] == ne, "%s ne %r, expected %r" % (name, info["ne"], ne))
        c.check(info["type"] == ttype, "%s type %d, expected %d" % (name, info["type"], ttype))
        c.check(info["offset"] % g["alignment"] == 0, "%s offset aligned" % name)
        end = g["data_offset"] + info["offset"] + tensor_bytes(info)
        c.check(end <= len(g["buf"]), "%s data inside the file" % name)

        y = dequant(g, name)
        yc = c_values(dump, path, name)
        c.check(yc.size == y.size and np.array_equal(yc, y.reshape(-1)),
                "%s: C reader and numpy disagree (max diff %g)" %
                (name, float(np.max(np.abs(yc - y.reshape(-1)))) if yc.size == y.size else -1))

        x = dequant(ref, name)  # the f32 model with the same seed
        err = np.abs(x.astype(np.float64) - y.astype(np.float64)).reshape(-1)
        if ttype == 0:
            ok = np.all(err == 0)
        elif ttype == 1:
            ok = np.all(err <= np.abs(x.reshape(-1)) * 2.0 ** -11 + 2.0 ** -25)
        elif ttype == 30:  # round to nearest, 8 significant bits
            ok = np.all(err <= np.abs(x.reshape(-1)) * 2.0 ** -8)
        elif ttype in (12, 14):
            # per super-block of 256. q4_k: 0.12 of its range (max(x,0) - min(x,0)):
            # the least-squares fit may clip an outlier, but its squared error is at
            # most plain rounding's, 32 (step/2)^2, so one element is off by at most
            # 1.41 steps (step = range/15), plus the 6-bit scale and min rounding
            # (~0.12 step, ~0.008 range); measured up to 0.069. q6_k: 1.15 steps of
            # max|x| / 32 (clamp at +31, int8 scale)
            xb = x.astype(np.float64).reshape(-1, 256)
            if ttype == 12:
                rng = np.maximum(xb.max(axis=1), 0) - np.minimum(xb.min(axis=1), 0)
                tol = 0.12 * rng
            else:
                tol = 1.15 * np.abs(xb).max(axis=1) / 32.0
            ok = np.all(err.reshape(-1, 256) <= tol[:, None] + 1e-12)
        else:
            d = np.repeat(block_scales(g, name), 32)
            # q8_0: half a step plus the f16 rounding of d over 127 steps;
            # q4_0: the clamp at +7 can cost a full step, plus the rounding of d
            tol = d * (0.5 + 128 * 2.0 ** -11) if ttype == 8 else d * (1.0 + 9 * 2.0 ** -11)
            ok = np.all(err <= tol + 1e-12)
        c.check(ok, "%s: %s values are not the quantized f32 weights (max err %g)" %
                (name, dtype, float(err.max())))

        sd = float(np.std(x))
        if len(ne) == 1:
            c.check(np.all(np.abs(x - 1.0) < 0.2), "%s: norm weights near 1" % name)
        elif name == "token_embd.weight":
            c.check(0.9 < sd < 1.1, "%s: std %g, expected 1" % (name, sd))
        else:
            exp = 1.0 / np.sqrt(ne[0])
            c.check(0.85 * exp < sd < 1.15 * exp, "%s: std %g, expected %g" % (name, sd, exp))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mkmodel", required=True)
    ap.add_argument("--dump", required=True)
    ap.add_argument("--dtype", default="f32", choices=list(DTYPES))
    ap.add_argument("--tokenizer", default="spm", choices=["spm", "bpe"])
    ap.add_argument("--keep", help="write the models here and keep them")
    a = ap.parse_args()
    set_opts(a.dtype)

    tmp = a.keep or tempfile.mkdtemp(prefix="inferd-gguf-check-")
    try:
        paths = {}
        for dt in sorted({"f32", a.dtype}):
            paths[dt] = os.path.join(tmp, "model-%s-%s.gguf" % (dt, a.tokenizer))
            o = OPTS
            cmd = [a.mkmodel, "llm", "--out", paths[dt], "--dtype", dt,
                   "--tokenizer", a.tokenizer, "--dim", str(o["dim"]),
                   "--layers", str(o["layers"]), "--heads", str(o["heads"]),
                   "--kv-heads", str(o["kv_heads"]), "--ffn", str(o["ffn"]),
                   "--vocab", str(o["vocab"]), "--context", str(o["context"]),
                   "--seed", str(o["seed"])]
            subprocess.run(cmd, check=True)
        g = parse_gguf(paths[a.dtype])
        ref = parse_gguf(paths["f32"])
        c = Checker()
        check_metadata(c, g, a.dtype, a.tokenizer)
        check_tensors(c, g, ref, a.dtype, a.dump, paths[a.dtype])
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%s/%s: %d checks passed, %d failed" % (a.dtype, a.tokenizer, c.passed, c.failures))
    return 1 if c.failures else 0


if __name__ == "__main__":
    sys.exit(main())
