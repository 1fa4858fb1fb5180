#!/usr/bin/env bash
# gpu_check: every CUDA test and GPU benchmark of the project in one command, for the few
# minutes a GPU machine is lent, with one dated section of figures for bench/RESULTS.md.
#
# The GPU machines lent to this project have nvcc, CMake and ninja but none of our Debian
# libraries (gRPC, Abseil, spdlog, ...) and no network, so the programs are built here and
# travel with the shared libraries they load:
#
#   tools/gpu_check.sh pack         build the CUDA tests and benchmarks (CUDA on, sm_80 and
#                                   sm_90) and copy them, their non-system shared libraries
#                                   and the scenes they read into gpu-pack/ (git-ignored)
#   tools/gpu_check.sh run [OUT]    on the GPU machine (device tool: carry gpu-pack): the
#                                   GPU's name, every CUDA test, the GPU benchmarks; writes
#                                   OUT/gpu_check.md (a RESULTS.md section) and
#                                   OUT/gpu_check_logs.tar.gz (every log and JSON report);
#                                   OUT defaults to $OUT, else gpu-check-out/
#   tools/gpu_check.sh [OUT]        pack, then run: for a machine with both the libraries
#                                   and a GPU
#
# Without a GPU, `run` says so in one line and exits 0, so CI-like checks can see that the
# pack still builds. A failed test makes the exit status 1; the other tests still run.
# Budget: the tests take about a minute on an H100 and the benchmarks are capped by
# FLEXGS_GPU_BENCH_SECONDS (default 240 in all), to stay under 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build}"
PACK="${FLEXGS_GPU_PACK:-gpu-pack}"
DATA_DIR="${FLEXGS_DATA_DIR:-../shared/data}"
TESTS=(rasterizer_cuda_test elastic_cuda_test device_store_cuda_test renderer_memory_test client_util_test)
BENCHES=(bench_rasterizer bench_elastic bench_backward)

pack() {
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLEXGS_CUDA=ON > /dev/null
  cmake --build "$BUILD_DIR" --target "${TESTS[@]}" "${BENCHES[@]}"
  rm -rf "$PACK"
  mkdir -p "$PACK/bin" "$PACK/lib" "$PACK/data"
  local t
  for t in "${TESTS[@]}"; do cp "$BUILD_DIR/tests/$t" "$PACK/bin/"; done
  for t in "${BENCHES[@]}"; do cp "$BUILD_DIR/bench/$t" "$PACK/bin/"; done
  # Every shared library the programs load except the C runtime and the CUDA driver, which
  # the GPU machine has in versions that match its kernel and GPU.
  ldd "$PACK"/bin/* | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
    { grep -vE '/(libc|libm|libdl|librt|libpthread|libcuda)\.so' || true; } |
    while read -r lib; do cp -L "$lib" "$PACK/lib/"; done
  git rev-parse --short HEAD > "$PACK/COMMIT" 2> /dev/null || echo unknown > "$PACK/COMMIT"
  for t in guitar.ply sh3-9k.ply; do
    if [[ -f $DATA_DIR/$t ]]; then cp "$DATA_DIR/$t" "$PACK/data/"; fi
  done
  echo "gpu_check: packed $(ls "$PACK/bin" | wc -l) programs, $(ls "$PACK/lib" | wc -l) libraries," \
    "$(du -sh "$PACK" | cut -f1) in $PACK/"
}

run() {
  local out="${1:-${OUT:-gpu-check-out}}"
  mkdir -p "$out"
  [[ -d $PACK/bin ]] || { echo "gpu_check: no $PACK/ here; run 'tools/gpu_check.sh pack' first" >&2; exit 2; }
  local gpu
  if ! gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2> /dev/null) ||
    [[ -z $gpu ]]; then
    echo "gpu_check: no NVIDIA GPU on this machine (nvidia-smi found none); built and packed only, nothing run"
    return 0
  fi
  # The packed libraries for the packed programs only (python3 there keeps its own).
  local libs="$PWD/$PACK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export FLEXGS_DATA_DIR="$PWD/$PACK/data"
  # Logs and JSON reports go to a scratch folder packed into one archive at the end: the
  # device tool brings back at most 8 files from $OUT.
  local md="$out/gpu_check.md" failed=0 t work
  work=$(mktemp -d)
  {
    echo "## GPU check: $(date -u +%Y-%m-%d) on ${gpu%%,*}"
    echo
    echo "Machine: $gpu; $(nproc) CPU cores. Command: \`tools/gpu_check.sh run\` (programs built by"
    echo "\`tools/gpu_check.sh pack\` at commit $(cat "$PACK/COMMIT"))."
    echo
    echo "| test program | passed | failed | skipped | seconds |"
    echo "| --- | ---: | ---: | ---: | ---: |"
  } > "$md"
  for t in "${TESTS[@]}"; do
    local start=$SECONDS rc=0
    LD_LIBRARY_PATH=$libs timeout 300 "$PACK/bin/$t" --gtest_output="json:$work/$t.json" > "$work/$t.log" 2>&1 || rc=$?
    if [[ $rc != 0 ]]; then
      failed=1
      echo "gpu_check: $t FAILED (exit $rc); its log is in gpu_check_logs.tar.gz"
      grep -E '^\[  FAILED  \]|Failure|error' "$work/$t.log" | head -20 || true
    fi
    python3 - "$work/$t.json" "$t" "$((SECONDS - start))" "$rc" >> "$md" << 'PY'
import json, sys
path, name, secs, rc = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
try:
    j = json.load(open(path))
except (OSError, ValueError):
    print(f"| {name} | - | exit {rc}, no report | - | {secs} |")
    sys.exit(0)
cases = [c for s in j["testsuites"] for c in s["testsuite"]]
skipped = sum(1 for c in cases if c.get("result") == "SKIPPED")
failed = sum(1 for c in cases if c.get("failures"))
print(f"| {name} | {len(cases) - skipped - failed} | {failed} | {skipped} | {secs} |")
PY
  done
  # One benchmark per process, each under its own timeout, so a slow one costs only itself;
  # those that no longer fit the budget are listed as not run.
  local budget="${FLEXGS_GPU_BENCH_SECONDS:-240}" bench_start=$SECONDS name n=0
  {
    echo
    echo "GPU benchmarks (every benchmark whose name has \`cuda\`; ${budget} s budget in all):"
    echo
    echo "| benchmark | time | unit | iterations |"
    echo "| --- | ---: | --- | ---: |"
  } >> "$md"
  for t in "${BENCHES[@]}"; do
    while read -r name; do
      [[ -n $name ]] || continue
      n=$((n + 1))
      local left=$((budget - (SECONDS - bench_start)))
      if ((left < 10)); then
        echo "| $name | not run: over the ${budget} s budget | | |" >> "$md"
        continue
      fi
      LD_LIBRARY_PATH=$libs timeout "$((left < 120 ? left : 120))" "$PACK/bin/$t" --benchmark_filter="^${name}\$" \
        --benchmark_format=json --benchmark_out="$work/bench-$n.json" > "$work/bench-$n.log" 2>&1 ||
        echo "| $name | stopped (exit $?), see bench-$n.log | | |" >> "$md"
      python3 - "$work/bench-$n.json" >> "$md" << 'PY'
import json, sys
try:
    j = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit(0)
for b in j.get("benchmarks", []):
    if "error_message" in b:
        print(f"| {b['name']} | error: {b['error_message']} | | |")
    else:
        print(f"| {b['name']} | {b['real_time']:.3f} | {b['time_unit']} | {b['iterations']} |")
PY
    done < <(LD_LIBRARY_PATH=$libs "$PACK/bin/$t" --benchmark_list_tests --benchmark_filter='[Cc]uda' 2> /dev/null)
  done
  tar -czf "$out/gpu_check_logs.tar.gz" -C "$work" .
  rm -rf "$work"
  cat "$md"
  return "$failed"
}

case "${1:-}" in
  pack) pack ;;
  run) run "${2:-}" ;;
  *)
    pack
    run "${1:-}"
    ;;
esac
