#!/usr/bin/env bash
# Where a decode step's time goes, launch by launch: ncu times every kernel node of the captured
# decode graph (each alone, so no overlap between launches, but at the GPU's own clocks and with
# the caches as the step leaves them), on a cut of the model a few layers deep (the layers repeat:
# one layer's launches are the figures that matter). Prints, for the last decode step, each
# kernel's mean time and the DRAM bytes it read (GB/s), summed by kernel name, then the step's
# first launches in order. Writes OUT_DIR/kernel_times.txt and the raw ncu CSV.
#   scripts/gpu_kernel_times.sh BUILD_DIR OUT_DIR [SYNTH_OPTIONS...]
# SYNTH_OPTIONS default to Qwen3-Next-80B-A3B's shapes, Q8_0, 4 layers. ncu is looked for on
# PATH and in /usr/local/cuda/bin. About a minute on an H200.
set -uo pipefail
build=${1:?usage: gpu_kernel_times.sh BUILD_DIR OUT_DIR [SYNTH_OPTIONS...]}
out=${2:?usage: gpu_kernel_times.sh BUILD_DIR OUT_DIR [SYNTH_OPTIONS...]}
shift 2
synth=("$@")
[ ${#synth[@]} -eq 0 ] && synth=(--arch qwen3next --preset 80b-a3b --type q8_0 --layers 4)
mkdir -p "$out"
export LD_LIBRARY_PATH="$build/libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
[ -x "$ncu" ] || { echo "gpu_kernel_times: no ncu" >&2; exit 1; }
model=${MOE_BENCH_DIR:-/dev/shm}/moe-kernel-times.gguf
"$build/moeserve" synth "${synth[@]}" -o "$model" >"$out/synth.log" 2>&1 || { echo "synth failed (see $out)" >&2; exit 1; }
# Three decode steps after the warm-up (bench -n 2 -r 1 runs tg2 twice): the last is a graph replay.
"$ncu" --graph-profiling node --clock-control none --cache-control none \
  --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv \
  "$build/moeserve" bench -m "$model" --kv-type q8_0 -p 0 -n 2 -r 1 >"$out/ncu.csv" 2>"$out/ncu.log"
rc=$?
rm -f "$model"
[ $rc -eq 0 ] || { echo "ncu failed ($rc, see $out/ncu.log)" >&2; exit 1; }
python3 - "$out/ncu.csv" <<'PY' | tee "$out/kernel_times.txt"
import collections, csv, re, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, rows = rows[0], rows[1:]
col = {name: head.index(name) for name in ("ID", "Kernel Name", "Metric Name", "Metric Value")}
kernels = collections.OrderedDict()  # launch id -> [name, us, bytes]
for r in rows:
    k = kernels.setdefault(r[col["ID"]], [r[col["Kernel Name"]], 0.0, 0.0])
    value = float(r[col["Metric Value"]].replace(",", ""))
    if r[col["Metric Name"]] == "gpu__time_duration.sum":
        k[1] = value / 1000  # ns -> us
    else:
        k[2] = value
launches = list(kernels.values())
# A step starts with the embedding's row lookup: the last one starts the last decode step.
starts = [i for i, k in enumerate(launches) if "get_rows" in k[0]]
step = launches[starts[-1]:] if starts else launches
# ncu writes the anonymous namespace as "unnamed>::"; the argument list goes too.
short = lambda name: re.sub(r"^void |\(.*", "", re.sub(r"moe::cuda::|\(anonymous namespace\)::|unnamed>::", "", name))[:70]
print(f"last decode step: {len(step)} launches, {sum(k[1] for k in step):.1f} us (each alone)")
total = collections.defaultdict(lambda: [0, 0.0, 0.0])
for name, us, b in step:
    t = total[short(name)]
    t[0] += 1; t[1] += us; t[2] += b
print(f"{'us total':>9} {'count':>5} {'us each':>8} {'GB/s':>7}  kernel")
for name, (n, us, b) in sorted(total.items(), key=lambda kv: -kv[1][1]):
    print(f"{us:9.1f} {n:5d} {us / n:8.2f} {b / (us * 1e3) if us else 0:7.0f}  {name}")
print("\nthe step's first launches:")
for name, us, b in step[:24]:
    print(f"{us:8.2f} us {b / 1e6:8.2f} MB  {short(name)}")
PY
