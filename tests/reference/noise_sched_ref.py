#!/usr/bin/python3
"""Independent numpy reference of inferd's noise schedulers (engine/diffusion/noise_sched.h),
written from diffusers' published formulas (DDIMScheduler, EulerDiscreteScheduler,
EulerAncestralDiscreteScheduler, DPMSolverMultistepScheduler with dpmsolver++ / order 2 /
midpoint / lower_order_final / final sigma zero, LCMScheduler), in float64, plus the seeded
noise generator (splitmix64 + Box-Muller) that the C code documents.

  noise_sched_ref.py --kind K --beta B --spacing S --offset N --pred P --steps N
                     --alpha-one 0|1 --n ELEMS --strength F [--clip-sample RANGE] OUT

A fixed run: latents = normal(seed 1) * init_noise_sigma; at step i the "model" answers
0.3 * scaled_input + 0.7 * normal(seed 1000 + i); Euler ancestral and LCM draw their noise from
one generator seeded 42. OUT (float64, little-endian): init_noise_sigma, timesteps (n),
sigmas (n + 1), then per step the scaled input (ELEMS), the predicted x0 (ELEMS) and the latents
after the step (ELEMS); then the start index for --strength, and add_noise(normal(seed 7),
normal(seed 8)) at that index (ELEMS, zeros when the index is n); then 8 normals of seed 12345.
"""
import argparse
import math
import sys

import numpy as np

M64 = (1 << 64) - 1


class Rng:
    def __init__(self, seed):
        self.state = seed & M64
        self.spare = None

    def u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def normal1(self):
        if self.spare is not None:
            v, self.spare = self.spare, None
            return v
        u1 = ((self.u64() >> 11) + 0.5) * 2.0 ** -53
        u2 = ((self.u64() >> 11) + 0.5) * 2.0 ** -53
        r = math.sqrt(-2.0 * math.log(u1))
        self.spare = r * math.sin(2.0 * math.pi * u2)
        return r * math.cos(2.0 * math.pi * u2)

    def normal(self, n):
        return np.array([self.normal1() for _ in range(n)])


def betas(kind, T, b0, b1):
    if kind == "linear":
        return np.linspace(b0, b1, T)
    if kind == "scaled_linear":
        return np.linspace(b0 ** 0.5, b1 ** 0.5, T) ** 2

    def ab(t):
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - ab((i + 1) / T) / ab(i / T), 0.999) for i in range(T)])


class Sched:
    def __init__(self, a):
        self.kind, self.pred, T, n = a.kind, a.pred, 1000, a.steps
        self.clip_range = a.clip_sample  # 0: off
        self.T, self.n = T, n
        self.acp = np.cumprod(1.0 - betas(a.beta, T, 0.00085, 0.012))
        self.final = 1.0 if a.alpha_one else self.acp[0]
        sig_all = ((1 - self.acp) / self.acp) ** 0.5
        sp = a.spacing
        if self.kind == "lcm":
            k = T // 50
            origin = (np.arange(1, 51) * k - 1)[::-1]
            idx = np.floor(np.linspace(0, 50, num=n, endpoint=False)).astype(np.int64)
            t = origin[idx].astype(np.float64)
        elif self.kind == "dpmpp_2m":
            if sp == "linspace":
                t = np.linspace(0, T - 1, n + 1).round()[::-1][:-1]
            elif sp == "leading":
                t = (np.arange(0, n + 1) * (T // (n + 1))).round()[::-1][:-1] + a.offset
            else:
                t = np.arange(T, 0, -T / n).round()[:n] - 1  # [:n]: arange may give n + 1
        else:
            if sp == "linspace":
                t = np.linspace(0, T - 1, n)[::-1]
                if self.kind == "ddim":
                    t = t.round()
            elif sp == "leading":
                t = (np.arange(0, n) * (T // n)).round()[::-1] + a.offset
            else:
                t = np.arange(T, 0, -T / n).round()[:n] - 1
        self.t = np.ascontiguousarray(t, dtype=np.float64)
        self.sigmas = np.concatenate([np.interp(self.t, np.arange(T), sig_all), [0.0]])
        self.init_sigma = 1.0
        if self.kind in ("euler", "euler_a"):
            m = self.sigmas.max()
            self.init_sigma = m if sp in ("linspace", "trailing") else (m * m + 1) ** 0.5
        self.hist = []
        self.lower = 0

    def scale(self, i, x):
        if self.kind in ("euler", "euler_a"):
            return x / (self.sigmas[i] ** 2 + 1) ** 0.5
        return x

    def clip(self, x0):
        return np.clip(x0, -self.clip_range, self.clip_range) if self.clip_range > 0 else x0

    def x0_of(self, x, m, at):
        if self.pred == "v_prediction":
            return at ** 0.5 * x - (1 - at) ** 0.5 * m
        return (x - (1 - at) ** 0.5 * m) / at ** 0.5

    def step(self, i, m, x, rng):
        k = self.kind
        if k == "ddim":
            t = int(self.t[i])
            prev = t - self.T // self.n
            at = self.acp[t]
            ap = self.acp[prev] if prev >= 0 else self.final
            x0 = self.clip(self.x0_of(x, m, at))
            eps = at ** 0.5 * m + (1 - at) ** 0.5 * x if self.pred == "v_prediction" else m
            return x0, ap ** 0.5 * x0 + (1 - ap) ** 0.5 * eps
        if k in ("euler", "euler_a"):
            s, s1 = self.sigmas[i], self.sigmas[i + 1]
            if self.pred == "v_prediction":
                x0 = m * (-s / (s * s + 1) ** 0.5) + x / (s * s + 1)
            else:
                x0 = x - s * m
            d = (x - x0) / s
            if k == "euler":
                return x0, x + d * (s1 - s)
            up = (s1 ** 2 * (s ** 2 - s1 ** 2) / s ** 2) ** 0.5
            down = (s1 ** 2 - up ** 2) ** 0.5
            return x0, x + d * (down - s) + rng.normal(x.size) * up
        if k == "lcm":
            t = int(self.t[i])
            last = i == self.n - 1
            prev = t if last else int(self.t[i + 1])
            at, ap = self.acp[t], (self.acp[prev] if prev >= 0 else self.final)
            st = t * 10.0
            c_skip = 0.25 / (st ** 2 + 0.25)
            c_out = st / (st ** 2 + 0.25) ** 0.5
            den = c_out * self.clip(self.x0_of(x, m, at)) + c_skip * x
            if last:
                return den, den
            return den, ap ** 0.5 * den + (1 - ap) ** 0.5 * rng.normal(x.size)
        # DPM-Solver++ 2M

        def al(sg):
            a = 1 / (sg * sg + 1) ** 0.5
            return a, sg * a

        a_s, s_s = al(self.sigmas[i])
        x0 = self.x0_of(x, m, a_s ** 2)
        self.hist = (self.hist + [x0])[-2:]
        lower_final = i == self.n - 1
        a_t, s_t = al(self.sigmas[i + 1])
        with np.errstate(divide="ignore"):
            lam_t = np.log(a_t) - np.log(s_t)
        lam_s = np.log(a_s) - np.log(s_s)
        h = lam_t - lam_s
        if self.lower < 1 or lower_final:
            out = (s_t / s_s) * x - a_t * (np.exp(-h) - 1.0) * x0
        else:
            a_1, s_1 = al(self.sigmas[i - 1])
            h0 = lam_s - (np.log(a_1) - np.log(s_1))
            r0 = h0 / h
            d0, d1 = self.hist[-1], (1.0 / r0) * (self.hist[-1] - self.hist[-2])
            out = (s_t / s_s) * x - a_t * (np.exp(-h) - 1.0) * d0 - 0.5 * (a_t * (np.exp(-h) - 1.0)) * d1
        self.lower = min(self.lower + 1, 2)
        return x0, out

    def add_noise(self, i, x0, noise):
        if self.kind in ("euler", "euler_a"):
            return x0 + noise * self.sigmas[i]
        at = self.acp[int(self.t[i])]
        return at ** 0.5 * x0 + (1 - at) ** 0.5 * noise


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", required=True)
    ap.add_argument("--beta", default="scaled_linear")
    ap.add_argument("--spacing", default="leading")
    ap.add_argument("--offset", type=int, default=1)
    ap.add_argument("--pred", default="epsilon")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--alpha-one", type=int, default=0)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--strength", type=float, default=0.6)
    ap.add_argument("--clip-sample", type=float, default=0.0)
    ap.add_argument("out")
    a = ap.parse_args(argv)
    s = Sched(a)
    res = [np.array([s.init_sigma]), s.t, s.sigmas]
    x = Rng(1).normal(a.n) * s.init_sigma
    rng = Rng(42)
    for i in range(s.n):
        xin = s.scale(i, x)
        m = 0.3 * xin + 0.7 * Rng(1000 + i).normal(a.n)
        x0, x = s.step(i, m, x, rng)
        res += [xin, x0, x]
    start = s.n - min(int(s.n * a.strength), s.n)
    res.append(np.array([float(start)]))
    if start < s.n:
        res.append(s.add_noise(start, Rng(7).normal(a.n), Rng(8).normal(a.n)))
    else:
        res.append(np.zeros(a.n))
    res.append(Rng(12345).normal(8))
    np.concatenate(res).astype("<f8").tofile(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
