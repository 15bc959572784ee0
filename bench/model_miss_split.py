#!/usr/bin/env python3
"""How much a hybrid decode layer could gain by splitting its RAM experts between the CPU and
the GPU while it runs, instead of by a share fixed at the hand-over (engine/pcie_balance.h).

A model of one layer, calibrated to the H200 machine's measurements (docs/performance.md
2026-11-28 (c)-(e)): each of a token's 10 picks misses VRAM with probability p (plain synth
routing: 0.76); a missed expert costs the CPU c us (16 threads on it: ~40) and the GPU g us
(a fill over PCIe, 3.34 MB at ~47 GB/s, and its products: 70-100), each with its own noise
(lognormal, sigma 0.15 and 0.10). The layer ends when the slower side does.

  share      the misses split at the hand-over: the GPU takes round(s * m) from the back (the
             best s of 0..20 twentieths, as the balance finds it)
  greedy     both sides claim from one list (the CPU from the front, the GPU from the back),
             whoever is free takes the next
  predictive the same, but the GPU takes the next only where it would end before the CPU would
             end everything left
  halves     predictive claims of half experts (each expert's rows split in two)

Calibration: at the best share the model's mean |CPU - GPU| a layer is 43 us (g = 100), the
measured waits 1.16 + ~1.1 ms a token over 48 layers (~47 us).
    python3 bench/model_miss_split.py [--layers N] [--seed S]
"""
import argparse
import random
import statistics


def costs(rng, m, c, g, parts):
    """Per-unit times of both sides for m experts cut into `parts` units each."""
    cpu = [c / parts * rng.lognormvariate(0, 0.15) for _ in range(m * parts)]
    gpu = [g / parts * rng.lognormvariate(0, 0.10) for _ in range(m * parts)]
    return cpu, gpu


def sides(cpu, gpu, s):
    """Both sides' times with the GPU taking round(s / 20 of the misses) from the back."""
    k = int(s / 20 * len(cpu) + 0.5)
    return sum(cpu[: len(cpu) - k]), sum(gpu[len(cpu) - k :])


def share(cpu, gpu, s):
    return max(sides(cpu, gpu, s))


def claims(cpu, gpu, c_unit, g_unit, predictive):
    i, j, tc, tg = 0, len(cpu) - 1, 0.0, 0.0
    while i <= j:
        if tc <= tg or (predictive and tg + g_unit > tc + c_unit * (j - i + 1)):
            tc, i = tc + cpu[i], i + 1
        else:
            tg, j = tg + gpu[j], j - 1
    return max(tc, tg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    print("misses p | CPU / GPU us an expert | best share (its mean |CPU - GPU|) | greedy | predictive | halves"
          " (us a layer)")
    for p, c, g in [(0.76, 40, 100), (0.76, 40, 70), (0.45, 40, 100)]:
        rng = random.Random(args.seed)
        layers = []
        for _ in range(args.layers):
            m = sum(rng.random() < p for _ in range(10))
            layers.append((costs(rng, m, c, g, 1), costs(rng, m, c, g, 2)))
        best, s_best = min((statistics.mean(share(*whole, s) for whole, _ in layers), s) for s in range(21))
        gap = statistics.mean(abs(a - b) for a, b in (sides(*whole, s_best) for whole, _ in layers))
        greedy = statistics.mean(claims(*whole, c, g, False) for whole, _ in layers)
        pred = statistics.mean(claims(*whole, c, g, True) for whole, _ in layers)
        halves = statistics.mean(claims(*half, c / 2, g / 2, True) for _, half in layers)
        pct = lambda t: f"{t:.1f} ({100 * (t - best) / best:+.1f}%)"
        print(f"{p} | {c} / {g} | {best:.1f} at {s_best}/20 ({gap:.1f}) | {pct(greedy)} | {pct(pred)} | {pct(halves)}")


if __name__ == "__main__":
    main()
