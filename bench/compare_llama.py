#!/usr/bin/env python3
"""moeserve bench against llama-bench on the same model files, runs interleaved.

Each pair runs `moeserve bench` and `llama-bench` once each (alternating which goes first),
both with the same -p/-n/-r/-t (and -d), and keeps every run's mean tok/s. Prints a markdown table
with all runs, the medians and the moeserve / llama.cpp ratio of the medians, and writes the
raw numbers as JSON. llama.cpp is not part of this project: build it yourself and pass the
path of its llama-bench.

  bench/compare_llama.py --llama-bench ~/llama.cpp/build/bin/llama-bench \\
      --pairs 5 -p 512 -n 128 -r 3 -t 2 -o results.json model-a.gguf [model-b.gguf ...]
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

MOESERVE = Path(__file__).resolve().parent.parent / "build" / "moeserve"


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out[out.index("["):])


def rows_by_test(results):
    """{'pp512': tok/s, 'tg128': tok/s} from a llama-bench style JSON array."""
    rows = {}
    for r in results:
        name = f"pp{r['n_prompt']}" if r["n_prompt"] > 0 else f"tg{r['n_gen']}"
        if r.get("n_depth", 0) > 0:
            name += f" @ d{r['n_depth']}"
        rows[name] = r["avg_ts"]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--llama-bench", required=True)
    ap.add_argument("--moeserve", default=str(MOESERVE))
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("-p", type=int, default=512)
    ap.add_argument("-n", type=int, default=128)
    ap.add_argument("-d", type=int, default=0, help="tokens in the context before each test (both tools' -d)")
    ap.add_argument("-r", type=int, default=3)
    ap.add_argument("-t", type=int, default=2)
    ap.add_argument("-o", "--output", default="compare_llama.json")
    ap.add_argument("--extra-moeserve", default="", help="more moeserve bench flags, e.g. '--kv-type q8_0'")
    ap.add_argument("--extra-llama", default="", help="more llama-bench flags")
    a = ap.parse_args()

    common = ["-p", str(a.p), "-n", str(a.n), "-r", str(a.r), "-t", str(a.t), "-o", "json"]
    if a.d > 0:
        common += ["-d", str(a.d)]
    report = []
    for model in a.models:
        engines = {
            "moeserve": [a.moeserve, "bench", "-m", model, *common, *a.extra_moeserve.split()],
            "llama.cpp": [a.llama_bench, "-m", model, *common, *a.extra_llama.split()],
        }
        runs = {"moeserve": [], "llama.cpp": []}
        for i in range(a.pairs):
            order = ["moeserve", "llama.cpp"] if i % 2 == 0 else ["llama.cpp", "moeserve"]
            for engine in order:
                t0 = time.time()
                runs[engine].append(rows_by_test(run_json(engines[engine])))
                print(f"{Path(model).name} pair {i + 1}/{a.pairs} {engine}: {runs[engine][-1]} "
                      f"({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        report.append({"model": model, "commands": engines, "runs": runs})

        print(f"\n{Path(model).name}\n")
        print("| test | llama.cpp runs (t/s) | median | moeserve runs (t/s) | median | moeserve / llama.cpp |")
        print("|---|---|---|---|---|---|")
        for test in runs["moeserve"][0]:
            lc = [r[test] for r in runs["llama.cpp"]]
            ms = [r[test] for r in runs["moeserve"]]
            fmt = lambda v: ", ".join(f"{x:.1f}" for x in v)
            ratio = statistics.median(ms) / statistics.median(lc)
            print(f"| {test} | {fmt(lc)} | {statistics.median(lc):.1f} | {fmt(ms)} | {statistics.median(ms):.1f} "
                  f"| {ratio:.2f} |")
    Path(a.output).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
