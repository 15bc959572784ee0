#!/usr/bin/env bash
# All GPU checks and benchmarks, run on the GPU machine in about five minutes. Writes
# OUT_DIR/results.json (one entry per check: exit code, seconds, gtest counts; the benchmarks'
# JSON) and OUT_DIR/logs.tar.gz.
#   scripts/gpu_checks.sh BUILD_DIR OUT_DIR
# BUILD_DIR is a CUDA build made elsewhere (scripts/build_gpu.sh) and carried over; shared
# libraries it needs that the GPU machine lacks are in BUILD_DIR/libs.
set -uo pipefail
build=${1:?usage: gpu_checks.sh BUILD_DIR OUT_DIR}
out=${2:?usage: gpu_checks.sh BUILD_DIR OUT_DIR}
mkdir -p "$out/logs"
export LD_LIBRARY_PATH="$build/libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

status=0
run() {  # run NAME COMMAND...: records the exit code and the log
  local name=$1
  shift
  local start=$(date +%s%N)
  "$@" >"$out/logs/$name.log" 2>&1
  local rc=$?
  local secs=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
  echo "{\"check\": \"$name\", \"exit_code\": $rc, \"seconds\": $secs}" >>"$out/logs/checks.jsonl"
  echo "$name: exit $rc (${secs}s)"
  [ $rc -eq 0 ] || status=1
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/logs/gpu.txt" 2>&1
run devices "$build/moeserve" devices
run test_cuda "$build/tests/cuda/test_cuda" --gtest_output="json:$out/logs/test_cuda.json"
# Every kernel test under memcheck; not the hybrid model tests: their decode steps poll host
# memory while the CPU's side runs, and under memcheck one test took over six minutes (2026-11-28,
# killed). The hand-off kernels' own tests (CudaOps.Hybrid*, the expert cache) run here. A limit
# keeps a hang from eating the machine's time (exit 124 then: see the log).
run sanitizer_memcheck timeout 300 compute-sanitizer --tool memcheck --error-exitcode 1 "$build/tests/cuda/test_cuda" \
  --gtest_filter='-HybridModel.*'
# Shared-memory hazards in the kernels that stage tiles or stretches between barriers (the
# tensor-core attention's double-buffered tiles, the conv's stretches read before it writes, the
# norm the router's blocks each make in shared memory).
run sanitizer_racecheck timeout 200 compute-sanitizer --tool racecheck --error-exitcode 1 "$build/tests/cuda/test_cuda" \
  --gtest_filter='CudaDeltaNet.Conv*:CudaDeltaNet.Fused*:CudaOps.Attention*:CudaFused.NormRoute*'
# The GPU engine against the CPU engine op by op (moeserve compare): tiny synth models, f32
# weights (float rounding only: the default threshold) and q8_0 (activations quantized on both
# sides; a value on a rounding boundary may land one step apart: a looser threshold).
tiny=$(mktemp -d)
for arch in qwen3moe qwen3 qwen3next; do
  for type in f32 q8_0; do
    threshold=$([ "$type" = f32 ] && echo 1e-3 || echo 5e-2)
    "$build/moeserve" synth --arch "$arch" --preset tiny --type "$type" -o "$tiny/m.gguf" >/dev/null 2>&1
    run "compare_${arch}_$type" bash -c "'$build/moeserve' compare -m '$tiny/m.gguf' --device cuda -p 12 -n 4 --threshold $threshold -o json > '$out/logs/compare_${arch}_$type.out'"
    # The same with a q8_0 KV cache on both sides (the same bytes stored; keys a rounding step
    # apart now and then move a score by a step's worth).
    [ "$type" = q8_0 ] && run "compare_${arch}_${type}_kvq8" bash -c "'$build/moeserve' compare -m '$tiny/m.gguf' --device cuda -p 12 -n 4 --kv-type q8_0 --threshold $threshold -o json > '$out/logs/compare_${arch}_${type}_kvq8.out'"
  done
done
rm -rf "$tiny"
# Benchmarks (JSON on stdout, kept whole in results.json).
run bench_cuda_matvec bash -c "'$build/bench/bench_cuda_matvec' --reps 7 > '$out/logs/bench_cuda_matvec.out'"
# The decode step's small launches (norms, routing, the fused delta-net step): microseconds each
# in a graph, where latency, not bytes, sets their time.
run bench_cuda_decode_ops bash -c "'$build/bench/bench_cuda_decode_ops' --reps 9 > '$out/logs/bench_cuda_decode_ops.out'"
# A launch boundary of the decode chain against a grid-wide barrier (what a persistent kernel would
# pay instead), microseconds each (a limit: a barrier that never opens would hang).
run bench_cuda_sync bash -c "timeout 60 '$build/bench/bench_cuda_sync' --reps 9 > '$out/logs/bench_cuda_sync.out'"
# The hybrid's CPU side alone on this machine's cores (a table in its log), 4 KiB and 2 MiB pages:
# expert_sum with weight prefetch off and at the default, and a plain read of the same bytes.
for thp in 0 1; do
  run "bench_expert_sum_thp$thp" "$build/bench/bench_expert_sum" --layers 4 --tokens 32 --threads 8,16 --thp $thp \
    --mode sum,read --prefetch 0,4096
done
# Whole models (synth files in /dev/shm, one at a time): Qwen3-Next-80B shapes cut to 12 layers
# (20 GiB) and Qwen3-30B-A3B shapes (30 GiB), prefill and decode on the GPU. MOE_GPU_BENCH_MODELS=0
# skips them; MOE_BENCH_NEXT / MOE_BENCH_MOE replace the synth options (e.g. "--preset tiny").
if [ "${MOE_GPU_BENCH_MODELS:-1}" = 1 ]; then
  shm=${MOE_BENCH_DIR:-/dev/shm}
  bench_model() {  # bench_model NAME VRAM_BUDGET SYNTH_OPTIONS...
    local name=$1 budget=$2
    shift 2
    run "synth_$name" "$build/moeserve" synth "$@" --type q8_0 -o "$shm/moe-$name.gguf"
    # Random full-size weights: near-tied routers and quantized activations let float-order
    # differences grow with depth (to a few percent; docs/correctness.md): the JSON records the
    # growth per op, the threshold only catches a broken engine.
    run "compare_$name" bash -c "'$build/moeserve' compare -m '$shm/moe-$name.gguf' --device cuda -p 12 -n 4 --threshold 0.5 -o json > '$out/logs/compare_$name.out'"
    run "bench_$name" bash -c "'$build/moeserve' bench -m '$shm/moe-$name.gguf' -p 512 -n 128 -r 3 -o json > '$out/logs/bench_$name.out'"
    # The same 4096 tokens deep into a context: attention reads the whole cache every token.
    run "bench_${name}_d4096" bash -c "'$build/moeserve' bench -m '$shm/moe-$name.gguf' -p 512 -n 128 -d 4096 -r 2 -o json > '$out/logs/bench_${name}_d4096.out'"
    # With a q8_0 cache (the user's setting): decode at depth reads its blocks, not halves.
    run "bench_${name}_d4096_q8" bash -c "'$build/moeserve' bench -m '$shm/moe-$name.gguf' -p 0 -n 64 -d 4096 -r 2 --kv-type q8_0 -o json > '$out/logs/bench_${name}_d4096_q8.out'"
    # Hybrid: part of the routed experts in RAM, computed by the CPU at the same time (issue 6).
    run "bench_${name}_hybrid" bash -c "'$build/moeserve' bench -m '$shm/moe-$name.gguf' -p 512 -n 64 -r 2 --vram-budget $budget -o json > '$out/logs/bench_${name}_hybrid.out'"
    # The budget holds everything the process has on the GPU: NVML's figure, the most it showed
    # from before loading to the end of the run.
    run "budget_${name}" python3 -c "
import json, sys
rows = json.load(open('$out/logs/bench_${name}_hybrid.out'))
units = {'GiB': 2**30, 'MiB': 2**20}
budget = float('$budget'[:-3]) * units['$budget'[-3:]]
used = max(rows[0]['vram_used_bytes'], rows[0].get('vram_peak_bytes', 0))
print(f'VRAM used {used / 2**30:.3f} GiB of a {budget / 2**30:.3f} GiB budget')
# The decode rows read against the placement's own ceiling (inspect's), a share that makes sense.
tg = [r for r in rows if r['n_gen'] > 0]
for r in tg:
    print(f\"tg{r['n_gen']}: {r['avg_ts']:.2f} t/s, {100 * r['ceiling_fraction']:.0f}% of the ceiling {r['ceiling_ts']:.2f} \"
          f\"(RAM {r['ceiling_ram_gb_s']:.1f} GB/s, PCIe {r['ceiling_pcie_gb_s']:.1f} GB/s), \"
          f\"{100 * r.get('ceiling_serial_fraction', 0):.0f}% of {r.get('ceiling_serial_ts', 0):.2f} with the serial part added; \"
          f\"ms a token: \"
          f\"GPU experts {r.get('gpu_expert_ms_per_token', 0):.2f}, waits {r.get('gpu_wait_ms_per_token', 0):.2f}, \"
          f\"serial {r.get('gpu_serial_ms_per_token', 0):.2f}; CPU experts {r.get('cpu_expert_ms_per_token', 0):.2f}, \"
          f\"waits {r.get('cpu_wait_ms_per_token', 0):.2f}\")
sys.exit(0 if used <= budget and all(0 < r['ceiling_fraction'] < 1.5 for r in tg) else 1)"
    # The same placement with the prefill left to the CPU (no staging buffer), and decode with
    # none of a token's RAM experts read by the GPU over PCIe (the default, auto, balances them).
    run "bench_${name}_hybrid_cpu_prefill" bash -c "'$build/moeserve' bench -m '$shm/moe-$name.gguf' -p 512 -n 0 -r 2 --vram-budget $budget --no-stream-prefill -o json > '$out/logs/bench_${name}_hybrid_cpu_prefill.out'"
    run "bench_${name}_hybrid_pcie0" bash -c "'$build/moeserve' bench -m '$shm/moe-$name.gguf' -p 0 -n 64 -r 2 --vram-budget $budget --pcie-experts 0 -o json > '$out/logs/bench_${name}_hybrid_pcie0.out'"
    rm -f "$shm/moe-$name.gguf"
  }
  # shellcheck disable=SC2086
  bench_model next12 8GiB --arch qwen3next ${MOE_BENCH_NEXT:---preset 80b-a3b --layers 12}
  # shellcheck disable=SC2086
  bench_model moe30b 16GiB --arch qwen3moe ${MOE_BENCH_MOE:---preset 30b-a3b}
fi
# The CPU kernels on this machine's CPU too (another vendor's AVX-512).
for t in core/test_core ops/test_ops engine/test_engine gguf/test_gguf; do
  [ -x "$build/tests/$t" ] && run "$(basename $t)" "$build/tests/$t" --gtest_output="json:$out/logs/$(basename $t).json"
done
# One summary: each check with its gtest counts where it wrote a gtest report.
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
checks = [json.loads(l) for l in open(os.path.join(out, "logs", "checks.jsonl"))]
for c in checks:
    report = os.path.join(out, "logs", c["check"] + ".json")
    if os.path.exists(report):
        r = json.load(open(report))
        c["tests"], c["failures"] = r.get("tests"), r.get("failures")
gpu = open(os.path.join(out, "logs", "gpu.txt")).read().strip()
benches = {}
names = ["bench_cuda_matvec", "bench_cuda_decode_ops", "bench_cuda_sync", "bench_next12", "bench_moe30b", "bench_next12_d4096", "bench_moe30b_d4096",
         "bench_next12_d4096_q8", "bench_moe30b_d4096_q8",
         "bench_next12_hybrid", "bench_moe30b_hybrid", "bench_next12_hybrid_cpu_prefill",
         "bench_moe30b_hybrid_cpu_prefill", "bench_next12_hybrid_pcie0", "bench_moe30b_hybrid_pcie0"]
names += [f[:-4] for f in sorted(os.listdir(os.path.join(out, "logs"))) if f.startswith("compare_") and f.endswith(".out")]
for name in names:
    path = os.path.join(out, "logs", name + ".out")
    try:
        benches[name] = json.load(open(path))
    except (OSError, ValueError):
        benches[name] = None
json.dump({"gpu": gpu, "checks": checks, "benchmarks": benches}, open(os.path.join(out, "results.json"), "w"), indent=2)
PY
tar -C "$out" -czf "$out/logs.tar.gz" logs && rm -rf "$out/logs"
exit $status
