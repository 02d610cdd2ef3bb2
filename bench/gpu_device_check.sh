#!/usr/bin/env bash
# The whole GPU procedure in one call, for a lent GPU machine (device time is short):
# build with the project's Makefile, the full test suite with the CUDA tests, the GPU
# benchmark sweep, then compute-sanitizer (memcheck, racecheck) over a workload that runs
# every CUDA code path once. Each step gets at most its share of a global deadline, so the
# call ends in time and still returns what it has. Everything lands in $OUT (the device
# tool's output folder; at most 8 files come back: summary.txt, build.log, tests.log,
# sanitizer.log, bench.log, results.md, results.json, speedup.png) or, elsewhere, in
# bench/results/gpu-<date>/; commit what is worth keeping under bench/results/.
#
#   bash bench/gpu_device_check.sh                      # all steps, 480 s in all
#   STEPS="build test" DEADLINE_S=300 bash bench/gpu_device_check.sh
#   BENCH_ARGS="--cell lstm" SANITIZER_TOOLS=memcheck bash bench/gpu_device_check.sh
#   TEST_PATHS=tests/test_cuda.py BENCH_ARGS="--group reference latency" bash bench/gpu_device_check.sh
#   STEPS="build profile" PROFILE_SIZES="-N 16 -H 768;-N 4 -H 512" bash bench/gpu_device_check.sh
#   STEPS="build cpu" bash bench/gpu_device_check.sh    # the CPU targets on 2 of the host's cores
#
# The device copy's .git can lag its working tree: name the commit that was sent,
# FUSED_RNN_GIT_COMMIT=<hash> (results.md and summary.txt then carry it).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-bench/results/gpu-$(date +%Y%m%d)}"
STEPS="${STEPS-build test bench sanitize}"  # add "profile" for Nsight Compute, "cpu" for the host CPU (below)
DEADLINE=$(( $(date +%s) + ${DEADLINE_S:-480} ))
BENCH_ARGS="${BENCH_ARGS:-}"
SANITIZER_TOOLS="${SANITIZER_TOOLS:-memcheck racecheck}"
export PYTHONUNBUFFERED=1
# The lent GPUs are Hopper (H100/H200): build for sm_90 only, to keep the build short.
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
mkdir -p "$OUT"
PY=.venv/bin/python

step() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt"; }
# Seconds a step may take: its own cap, or what is left before the deadline.
allowance() { local left=$(( DEADLINE - $(date +%s) )); echo $(( left < $1 ? (left > 1 ? left : 1) : $1 )); }

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
  nvcc --version | tail -1
  echo "commit ${FUSED_RNN_GIT_COMMIT:-$(git log --oneline -1 2>/dev/null) (as the .git of this copy says)}"
} >> "$OUT/summary.txt" 2>&1

if step build; then
  if command -v make > /dev/null; then
    FUSED_RNN_PTXAS_VERBOSE=1 timeout "$(allowance 300)" make build > "$OUT/build.log" 2>&1
  else  # what `make build` does, where make itself is missing
    echo "no make: building with python3 directly" > "$OUT/build.log"
    FUSED_RNN_PTXAS_VERBOSE=1 timeout "$(allowance 300)" python3 setup.py build_ext --inplace >> "$OUT/build.log" 2>&1
  fi
  log "build: exit $? ($(grep -c 'spill' "$OUT/build.log") ptxas reports, $(grep -E '[1-9][0-9]* bytes spill' -c "$OUT/build.log") with spills)"
fi

if step test; then
  [ -x "$PY" ] || PY=python3  # built without make
  $PY -c "import torch; assert torch.cuda.is_available(), 'no GPU visible'" || log "WARNING: no GPU visible"
  # pytest-xdist where present: 8 workers of 2 threads each (the CI machine's thread count).
  PARALLEL=""
  $PY -c "import xdist" 2>/dev/null && PARALLEL="-n 8"
  OMP_NUM_THREADS=2 timeout "$(allowance 240)" $PY -m pytest -q -p no:cacheprovider $PARALLEL \
    -rfE --durations=15 ${TEST_PATHS:-tests} > "$OUT/tests.log" 2>&1
  log "tests: exit $? -- $(grep -E '(passed|failed|error)' "$OUT/tests.log" | tail -1)"
fi

if step bench; then
  timeout "$(allowance 240)" $PY bench/throughput.py --sweep cuda --out "$OUT" \
    --budget 0.4 --min-repeats 5 --warmup 2 $BENCH_ARGS > "$OUT/bench.log" 2>&1
  log "bench: exit $? (results.md, results.json, speedup.png)"
fi

if step sanitize; then
  SANITIZER="$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)"
  if [ -n "$SANITIZER" ]; then
    for tool in $SANITIZER_TOOLS; do
      echo "=== $tool" >> "$OUT/sanitizer.log"
      timeout "$(allowance 100)" "$SANITIZER" --tool "$tool" --error-exitcode 99 \
        $PY bench/cuda_kernel_workload.py >> "$OUT/sanitizer.log" 2>&1
      log "compute-sanitizer $tool: exit $? -- $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer.log" | tail -1)"
    done
  else
    log "compute-sanitizer not found"
  fi
fi

# Nsight Compute over one launch of the persistent forward kernel at a few sizes: speed of
# light, occupancy and the warps' stall reasons, appended to bench.log (the 8-file limit).
if step profile; then
  NCU="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)"
  IFS=';' read -ra sizes <<< "${PROFILE_SIZES:--N 1 -H 256;-N 16 -H 768}"  # ';' between sizes
  for size in "${sizes[@]}"; do
    echo "=== ncu: lstm $size" >> "$OUT/bench.log"
    ncu_args=(--clock-control none --kernel-name regex:forward_kernel --launch-skip 2 --launch-count 1
              --section SpeedOfLight --section Occupancy --section WarpStateStats)
    stalls=(--metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\\.ratio")
    # The stall-reason metrics by name where this ncu knows them, else the sections alone.
    timeout "$(allowance 60)" "$NCU" "${ncu_args[@]}" "${stalls[@]}" \
      $PY bench/profiling/persistent_profile.py $size >> "$OUT/bench.log" 2>&1 ||
      timeout "$(allowance 60)" "$NCU" "${ncu_args[@]}" $PY bench/profiling/persistent_profile.py $size >> "$OUT/bench.log" 2>&1
    log "ncu lstm $size: exit $?"
  done
fi

# The CPU targets sweep on 2 cores of the GPU machine's host (an AVX-512 Xeon: the
# development machine may lack AVX-512), then where the LSTM and GRU calls spend their time
# at (50, 32, 512, 512): results in $OUT/cpu/, the rest appended to bench.log. With the
# bench step too, more than 8 files would have to come back: run it without.
if step cpu; then
  pin="taskset -c 0,1"
  command -v taskset > /dev/null || pin=""
  { lscpu | grep -E "Model name|^CPU\(s\)"; $PY -c "import torch; print('torch', torch.__version__, torch.backends.cpu.get_cpu_capability())"; } >> "$OUT/bench.log" 2>&1
  timeout "$(allowance 150)" $pin $PY bench/throughput.py --device cpu --threads 2 --sweep targets \
    --out "$OUT/cpu" >> "$OUT/bench.log" 2>&1
  log "cpu targets: exit $? (cpu/results.md) -- $(grep -E 'PASS, .* MISS' "$OUT/bench.log" | tail -1)"
  for cell in lstm gru; do
    timeout "$(allowance 45)" $pin $PY bench/profiling/phase_times.py --cell $cell \
      --shapes 50,32,512 --mode both --calls 5 --threads 2 >> "$OUT/bench.log" 2>&1
    log "cpu phase times, $cell: exit $? -- $(grep -c 'us per call' "$OUT/bench.log") lines in bench.log"
  done
fi

log "done; $(( DEADLINE - $(date +%s) )) s left of the deadline"
tail -25 "$OUT/tests.log" 2>/dev/null
cat "$OUT/summary.txt"
