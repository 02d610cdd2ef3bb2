#!/usr/bin/env bash
# The whole GPU procedure in one call (at most 8 files come back from the device: this
# writes summary.txt, build.log, tests.log, sanitizer-{memcheck,racecheck}.log and the
# benchmark's results.{md,json} and speedup.png), for a lent GPU machine (device time is short):
# build, the full test suite with the CUDA tests, compute-sanitizer (memcheck, racecheck)
# over the CUDA tests, then the GPU benchmark sweep. Everything lands in $OUT (the device
# tool's output folder) or, elsewhere, in bench/results/gpu-<date>/; commit what is worth
# keeping under bench/results/.
#
#   bash bench/gpu_device_check.sh            # all steps
#   STEPS="build test" bash bench/gpu_device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-bench/results/gpu-$(date +%Y%m%d)}"
STEPS="${STEPS-build test sanitize bench}"
export PYTHONUNBUFFERED=1
# The lent GPUs are Hopper (H100/H200): build for sm_90 only, to keep the build short.
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
mkdir -p "$OUT"

step() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt"; }

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
  nvcc --version | tail -1
} >> "$OUT/summary.txt" 2>&1

if step build; then
  FUSED_RNN_PTXAS_VERBOSE=1 make build > "$OUT/build.log" 2>&1
  log "build: exit $? ($(grep -c 'spill' "$OUT/build.log") ptxas reports, $(grep -E '[1-9][0-9]* bytes spill' -c "$OUT/build.log") with spills)"
fi

if step test; then
  .venv/bin/python -c "import torch; assert torch.cuda.is_available(), 'no GPU visible'" || log "WARNING: no GPU visible"
  .venv/bin/python -m pytest -q -p no:cacheprovider tests > "$OUT/tests.log" 2>&1
  log "tests: exit $? -- $(tail -1 "$OUT/tests.log")"
fi

if step sanitize; then
  SANITIZER="$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)"
  if [ -n "$SANITIZER" ]; then
    for tool in memcheck racecheck; do
      "$SANITIZER" --tool "$tool" --error-exitcode 99 --target-processes all \
        .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_cuda.py -k "not compile and not gradcheck" \
        > "$OUT/sanitizer-$tool.log" 2>&1
      log "compute-sanitizer $tool: exit $? -- $(grep -E 'ERROR SUMMARY' "$OUT/sanitizer-$tool.log" | tail -1)"
    done
  else
    log "compute-sanitizer not found"
  fi
fi

if step bench; then
  .venv/bin/python bench/throughput.py --sweep cuda --out "$OUT" > /tmp/fused_rnn_bench.log 2>&1
  log "bench: exit $? (results.md, results.json, speedup.png in $OUT); last lines:"
  tail -5 /tmp/fused_rnn_bench.log >> "$OUT/summary.txt"
fi
