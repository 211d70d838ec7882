#!/usr/bin/python3
"""Independent float64 reference of the llama / qwen2 forward pass.

Reads a GGUF file with the numpy parser and dequantizers of gguf_check.py
(imported, not copied; they share no code with engine/), computes the logits
of a token sequence in float64 by the textbook formulas, with no KV cache (the
whole sequence is recomputed), and optionally continues it greedily.

  llama_ref.py --model M.gguf --tokens 1,2,3 [--logits OUT] [--greedy N]

--logits OUT  writes the logits of every prompt position as raw little-endian
              float64, shape (n_tokens, n_vocab)
--greedy N    prints N greedily generated token ids on one line, then on a
              second line the margin (top1 - top2 logit) of each choice, so a
              caller can tell a near tie from a real disagreement.

Conventions checked against real files: llama GGUF files store Q and K with
the rows permuted by llama.cpp's converter so that RoPE rotates adjacent pairs
(x[2i], x[2i+1]); qwen2 rotates the halves (x[i], x[i + n_rot/2]) ("neox").
Exit status 0, or 1 with a message on an unsupported file.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_check import parse_gguf, dequant  # noqa: E402


class Model:
    def __init__(self, path):
        g = parse_gguf(path)
        kv = g["kv"]
        arch = kv["general.architecture"]
        if arch not in ("llama", "qwen2"):
            raise SystemExit("llama_ref: unsupported architecture %r" % arch)
        self.arch = arch
        self.dim = kv[arch + ".embedding_length"]
        self.n_layers = kv[arch + ".block_count"]
        self.n_heads = kv[arch + ".attention.head_count"]
        self.n_kv = kv.get(arch + ".attention.head_count_kv", self.n_heads)
        self.hd = kv.get(arch + ".attention.key_length", self.dim // self.n_heads)
        self.n_rot = kv.get(arch + ".rope.dimension_count", self.hd)
        self.eps = kv[arch + ".attention.layer_norm_rms_epsilon"]
        self.base = kv.get(arch + ".rope.freq_base", 10000.0)
        self.neox = arch == "qwen2"
        t = lambda name: dequant(g, name).astype(np.float64)
        self.embd = t("token_embd.weight")              # (vocab, dim)
        self.out_norm = t("output_norm.weight")
        self.output = t("output.weight") if "output.weight" in g["tensors"] else self.embd
        self.layers = []
        for l in range(self.n_layers):
            p = "blk.%d." % l
            L = {k: t(p + k + ".weight") for k in
                 ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                  "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}
            for b in ("attn_q", "attn_k", "attn_v"):
                name = p + b + ".bias"
                L[b + "_b"] = t(name) if name in g["tensors"] else 0.0
            self.layers.append(L)
        self.vocab = self.embd.shape[0]

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, n_heads):
        """x: (T, n_heads*hd) -> rotated copy; position of row t is t."""
        T = x.shape[0]
        x = x.reshape(T, n_heads, self.hd).copy()
        half = self.n_rot // 2
        inv = self.base ** (-2.0 * np.arange(half) / self.n_rot)
        th = np.arange(T)[:, None] * inv[None, :]           # (T, half)
        c, s = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
        if self.neox:
            a, b = x[:, :, :half].copy(), x[:, :, half:self.n_rot].copy()
            x[:, :, :half] = a * c - b * s
            x[:, :, half:self.n_rot] = a * s + b * c
        else:
            a, b = x[:, :, 0:self.n_rot:2].copy(), x[:, :, 1:self.n_rot:2].copy()
            x[:, :, 0:self.n_rot:2] = a * c - b * s
            x[:, :, 1:self.n_rot:2] = a * s + b * c
        return x.reshape(T, n_heads * self.hd)

    def logits(self, tokens):
        T = len(tokens)
        x = self.embd[np.array(tokens)]
        grp = self.n_heads // self.n_kv
        mask = np.triu(np.full((T, T), -np.inf), 1)
        for L in self.layers:
            xn = self.rmsnorm(x, L["attn_norm"])
            q = self.rope(xn @ L["attn_q"].T + L["attn_q_b"], self.n_heads)
            k = self.rope(xn @ L["attn_k"].T + L["attn_k_b"], self.n_kv)
            v = xn @ L["attn_v"].T + L["attn_v_b"]
            att = np.zeros((T, self.n_heads * self.hd))
            for h in range(self.n_heads):
                kh = h // grp
                qh = q[:, h * self.hd:(h + 1) * self.hd]
                K = k[:, kh * self.hd:(kh + 1) * self.hd]
                V = v[:, kh * self.hd:(kh + 1) * self.hd]
                sc = qh @ K.T / np.sqrt(self.hd) + mask
                sc = np.exp(sc - sc.max(axis=1, keepdims=True))
                sc /= sc.sum(axis=1, keepdims=True)
                att[:, h * self.hd:(h + 1) * self.hd] = sc @ V
            x = x + att @ L["attn_output"].T
            xn = self.rmsnorm(x, L["ffn_norm"])
            g = xn @ L["ffn_gate"].T
            u = xn @ L["ffn_up"].T
            x = x + (g / (1.0 + np.exp(-g)) * u) @ L["ffn_down"].T
        return self.rmsnorm(x, self.out_norm) @ self.output.T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--logits", help="write the prompt's logits (float64) here")
    ap.add_argument("--greedy", type=int, default=0)
    a = ap.parse_args()
    m = Model(a.model)
    toks = [int(t) for t in a.tokens.split(",") if t]
    if not toks or min(toks) < 0 or max(toks) >= m.vocab:
        raise SystemExit("llama_ref: token ids must be in [0, %d)" % m.vocab)
    if a.logits:
        m.logits(toks).astype("<f8").tofile(a.logits)
    if a.greedy:
        out, margins = [], []
        seq = list(toks)
        for _ in range(a.greedy):
            lg = m.logits(seq)[-1]
            order = np.argsort(-lg, kind="stable")
            out.append(int(order[0]))
            margins.append(float(lg[order[0]] - lg[order[1]]))
            seq.append(out[-1])
        print(" ".join(str(t) for t in out))
        print(" ".join("%.6g" % x for x in margins))
    return 0


if __name__ == "__main__":
    sys.exit(main())
