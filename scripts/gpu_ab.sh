#!/usr/bin/env bash
# Two CUDA builds of moeserve against each other on the GPU machine, the way docs/performance.md
# quotes them: full-size synth models in /dev/shm, the builds alternating round by round (the
# order flipped every other round, so a drift of the machine weighs on both), medians and paired
# ratios printed at the end. Device time is the scarce thing: one call of this script is an A/B.
#   scripts/gpu_ab.sh BUILD_A BUILD_B OUT_DIR [ROUNDS]
# BUILD_*: trees made by scripts/build_gpu.sh (build-gpu/stage), carried over; BUILD_A's libs/
# serve both. A side may be one build with environment settings, BUILD@VAR=VALUE[,VAR=VALUE]
# (e.g. build-gpu/stage@MOE_L2_PREFETCH=2 against build-gpu/stage): the runs take them. ROUNDS: 3 unless given. Tests (MOE_AB_TESTS, space-separated, default all):
#   v80   Qwen3-Next-80B-A3B Q8_0 all in VRAM, tg128 (about 20 s a run with the load)
#   v30   Qwen3-30B-A3B Q8_0 all in VRAM, tg128 (about 10 s)
#   h80   the 80B in a 16 GiB budget, plain synth routing (about 15 s)
#   h80l  the same with --routing local (Qwen3-Next's published locality)
# The models are made once (80B: about 160 s, 30B: about 70 s) and kept for the next call;
# /dev/shm is grown to hold the 80B where it is smaller. Writes OUT_DIR/runs.jsonl (one line a
# run: test, build, round, the bench's rows) and OUT_DIR/summary.json.
set -uo pipefail
a=${1:?usage: gpu_ab.sh BUILD_A BUILD_B OUT_DIR [ROUNDS]}
b=${2:?usage: gpu_ab.sh BUILD_A BUILD_B OUT_DIR [ROUNDS]}
out=${3:?usage: gpu_ab.sh BUILD_A BUILD_B OUT_DIR [ROUNDS]}
rounds=${4:-3}
tests=${MOE_AB_TESTS:-v80 v30 h80 h80l}
shm=${MOE_BENCH_DIR:-/dev/shm}
mkdir -p "$out"
a_env=$([[ $a == *@* ]] && echo "${a#*@}" | tr ',' ' ')
b_env=$([[ $b == *@* ]] && echo "${b#*@}" | tr ',' ' ')
a=${a%%@*}
b=${b%%@*}
export LD_LIBRARY_PATH="$a/libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
m80=$shm/moe-ab-next80.gguf
m30=$shm/moe-ab-moe30.gguf

need() {  # need FILE SYNTH_OPTIONS...: the synth model, made once
  local file=$1
  shift
  [ -s "$file" ] && return 0
  if [ "$file" = "$m80" ] && [ "$(df --output=size -B1G "$shm" | tail -1)" -lt 100 ]; then
    mount -o remount,size=120G "$shm" || echo "gpu_ab: could not grow $shm" >&2
  fi
  local start=$(date +%s)
  "$a/moeserve" synth "$@" --type q8_0 -o "$file" >"$out/synth_$(basename "$file").log" 2>&1 || {
    echo "gpu_ab: synth $* failed (see $out)" >&2
    exit 1
  }
  echo "synth $(basename "$file"): $(($(date +%s) - start)) s"
}

args_of() {  # the bench options of a test
  case $1 in
    v80) echo "-m $m80 --kv-type q8_0 -p 0 -n 128 -r 3" ;;
    v30) echo "-m $m30 --kv-type q8_0 -p 0 -n 128 -r 3" ;;
    h80) echo "-m $m80 --kv-type q8_0 -p 0 -n 128 -r 2 -t $(nproc) --vram-budget 16GiB" ;;
    h80l) echo "-m $m80 --kv-type q8_0 -p 0 -n 128 -r 2 -t $(nproc) --vram-budget 16GiB --routing local" ;;
    *) echo "gpu_ab: unknown test $1" >&2 && exit 2 ;;
  esac
}

for t in $tests; do
  case $t in
    v80 | h80 | h80l) need "$m80" --arch qwen3next --preset 80b-a3b ;;
    v30) need "$m30" --arch qwen3moe --preset 30b-a3b ;;
  esac
done

for ((r = 1; r <= rounds; ++r)); do
  order="A B"
  ((r % 2 == 0)) && order="B A"
  for t in $tests; do
    for which in $order; do
      build=$([ "$which" = A ] && echo "$a" || echo "$b")
      settings=$([ "$which" = A ] && echo "$a_env" || echo "$b_env")
      # shellcheck disable=SC2046,SC2086
      rows=$(env $settings "$build/moeserve" bench $(args_of "$t") -o json 2>"$out/$t-$which-$r.err") || rows=null
      # bench prints its JSON over many lines: one line a run here, or runs.jsonl is not JSON lines
      rows=$(python3 -c 'import json, sys; print(json.dumps(json.loads(sys.stdin.read() or "null")))' <<<"$rows" 2>/dev/null) ||
        rows=null
      echo "{\"test\": \"$t\", \"build\": \"$which\", \"round\": $r, \"rows\": $rows}" >>"$out/runs.jsonl"
      python3 - "$t" "$which" "$r" "$rows" <<'PY'
import json, sys
t, which, r, rows = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
if not rows:
    print(f"{t} {which} round {r}: FAILED")
    sys.exit()
row = rows[0]
extra = " ".join(f"{k.split('_')[0]}_{k.split('_')[1]}={row[k]:.3f}" for k in
                 ("cpu_expert_ms_per_token", "cpu_wait_ms_per_token", "gpu_wait_ms_per_token", "gpu_serial_ms_per_token")
                 if isinstance(row.get(k), (int, float)))
print(f"{t} {which} round {r}: {row['avg_ts']:.2f} t/s {extra}")
PY
    done
  done
done

# Medians of each side and the median of the paired ratios (B / A, round by round).
python3 - "$out" "$a${a_env:+ ($a_env)}" "$b${b_env:+ ($b_env)}" <<'PY'
import json, os, statistics, sys
out, a, b = sys.argv[1:4]
runs = [json.loads(l) for l in open(os.path.join(out, "runs.jsonl"))]
summary = {"A": a, "B": b, "tests": {}}
for t in dict.fromkeys(r["test"] for r in runs):
    ts = {"A": {}, "B": {}}
    serial = {"A": [], "B": []}
    for r in runs:
        if r["test"] == t and r["rows"]:
            ts[r["build"]][r["round"]] = r["rows"][0]["avg_ts"]
            if "gpu_serial_ms_per_token" in r["rows"][0]:
                serial[r["build"]].append(r["rows"][0]["gpu_serial_ms_per_token"])
    pairs = [ts["B"][k] / ts["A"][k] for k in ts["A"] if k in ts["B"]]
    s = {side: {"t_s": sorted(ts[side].values()), "median": statistics.median(ts[side].values()) if ts[side] else None}
         for side in ("A", "B")}
    s["paired_b_over_a"] = {"ratios": [round(p, 4) for p in pairs], "median": statistics.median(pairs) if pairs else None}
    for side in ("A", "B"):
        if serial[side]:
            s[side]["serial_ms_median"] = statistics.median(serial[side])
    summary["tests"][t] = s
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    print(f"{t}: A {fmt(s['A']['median'])}  B {fmt(s['B']['median'])}  B/A paired {fmt(s['paired_b_over_a']['median'])} "
          f"({', '.join(f'{p:.3f}' for p in pairs)})")
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
PY
