#!/usr/bin/env bash
# Issue #22's GPU measurements in one run, in priority order, within a time budget (device time
# is short: one call). Each step runs only if the time it needs is left; a skipped step is named
# in the tables. Writes two files (what a lent machine sends back): $OUT/gpu_tables.md (every
# table, the test summary) and $OUT/gpu_log.txt (the steps' stderr, the full test output).
#
#   bash benchmarks/gpu_suite.sh               # on a machine with a CUDA GPU (budget 470 s)
#   bash benchmarks/gpu_suite.sh --cpu-smoke   # every step, tiny, on this CPU: checks the script
#
# Runs from the source tree (PYTHONPATH is the checkout; nothing installed). The lent machine has
# no PyAV: put its wheel in .whl/ (ignored by git) and carry .whl; the suite installs every wheel
# there into /tmp/afnet-site first. OmegaConf (training only) is not needed.
# Environment: OUT (default results/gpu), PYTHON (default python3), GPU_SUITE_BUDGET (seconds).
set -uo pipefail
cd "$(dirname "$0")/.."
smoke=0
[ "${1:-}" = "--cpu-smoke" ] && smoke=1
out=${OUT:-results/gpu}
mkdir -p "$out"
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if ls .whl/*.whl > /dev/null 2>&1; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/afnet-site \
      .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/afnet-site"
fi
tables="$out/gpu_tables.md"
log="$out/gpu_log.txt"
: > "$log"
if [ $smoke = 1 ]; then
  budget=${GPU_SUITE_BUDGET:-3600}
  dev=cpu
  bench=(--device cpu --small --size 64 --rounds 1)   # every section, tiny
  b_all=(--batches 1) b_small=(--batches 1) b_mid=(--batches 1) b_big=(--batches 2)
  videos=3
  kexpr="cuda or device or fixed"                    # the CUDA tests skip; their neighbours run
else
  budget=${GPU_SUITE_BUDGET:-470}
  dev=cuda
  bench=(--device cuda --rounds 10)
  b_all=(--batches 1 8 32) b_small=(--batches 1) b_mid=(--batches 8) b_big=(--batches 32)
  videos=100
  kexpr=""                                           # every test of the two files
fi
{
  echo "# GPU suite, issue #22 ($(date -u +%FT%TZ), $([ $smoke = 1 ] && echo 'CPU smoke run: tiny models and sizes, timings meaningless' || nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi'))"
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.get_device_name() if torch.cuda.is_available() else None)"
  echo "budget ${budget} s; git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo
} > "$tables"

# step NAME SECONDS CMD...: CMD, if about SECONDS are left, killed when the budget runs out;
# its stdout goes to the tables, its stderr to the log.
step() {
  local name=$1 need=$2 left
  shift 2
  left=$((budget - SECONDS))
  if [ "$left" -lt "$need" ]; then
    echo "- **skipped: $name** ($left s left, needs about $need s)" | tee -a "$tables"
    return
  fi
  echo "## $name" >> "$tables"
  echo "== $name: $*" >> "$log"
  local start=$SECONDS
  timeout -k 5 "$((left - 2))" "$@" >> "$tables" 2>> "$log"
  local rc=$?
  echo "($name: exit $rc, $((SECONDS - start)) s)" | tee -a "$tables"
  echo >> "$tables"
}

# 1. every CUDA test (no host sync where the policy fixes the counts; masks equal the CPU's; predict on CUDA)
step "CUDA tests: test_execution.py, test_device.py" 60 bash -c '"$1" -m pytest -q -m "not slow" -p no:cacheprovider \
    -k "$2" tests/test_execution.py tests/test_device.py >> "$3" 2>&1; rc=$?
    grep -E "^(FAILED|ERROR)|[0-9]+ (passed|failed)" "$3" | tail -12; exit $rc' _ "$py" "$kexpr" "$log"
# 2. afnet predict --device cuda against --device cpu: same top-5 and masks
step "predict --device $dev vs --device cpu, $videos videos" 40 \
    $py benchmarks/predict_devices.py --device $dev --videos $videos --spatial
# 3. more is less, eager, fp32 as torch runs it on a GPU by default (cuDNN TF32), as in the 2026-12-04 tables
step "AF-ResNet50-TSM 12f r=0.4 vs TSM-ResNet50 8f, eager fp32" 30 \
    $py benchmarks/bench_models.py "${bench[@]}" "${b_all[@]}" --sections more
# 4. sparse vs masked at every ratio; the gather's sizing (static counts, CUDA graph of static-k)
step "sparse vs masked; sizing the gather" 45 \
    $py benchmarks/bench_models.py "${bench[@]}" "${b_all[@]}" --sections sparse sync
# 5. per-stage roofline at batch 32: achieved TFLOP/s and MB moved per stage, both models
step "per-stage roofline" 20 $py benchmarks/bench_models.py "${bench[@]}" "${b_big[@]}" --sections stages
# 6. more is less in bf16 (autocast)
step "AF vs TSM, eager bf16" 25 $py benchmarks/bench_models.py "${bench[@]}" "${b_all[@]}" --bf16 --sections more
# 7. AF's pooling and fusion passes against identical alternatives
step "AF passes, fp32 and bf16" 15 bash -c "$py benchmarks/af_passes.py --device $dev $([ $smoke = 1 ] && echo --quick \
    || echo '--batch 32 --rounds 20') && $py benchmarks/af_passes.py --device $dev --bf16 \
    $([ $smoke = 1 ] && echo --quick || echo '--batch 32 --rounds 20')"
# 8. both models under the same compilation (compiling AF takes about a minute: last)
step "AF vs TSM compiled (default), fp32, batch 32" 100 \
    $py benchmarks/bench_models.py "${bench[@]}" "${b_big[@]}" --sections compile --compile-modes default
step "AF vs TSM compiled (reduce-overhead: CUDA graphs), fp32, batch 1" 70 \
    $py benchmarks/bench_models.py "${bench[@]}" "${b_small[@]}" --sections compile --compile-modes reduce-overhead
step "AF vs TSM compiled (default), bf16, batch 32" 90 \
    $py benchmarks/bench_models.py "${bench[@]}" "${b_big[@]}" --bf16 --sections compile --compile-modes default
step "AF vs TSM compiled (default), fp32, batch 8" 90 \
    $py benchmarks/bench_models.py "${bench[@]}" "${b_mid[@]}" --sections compile --compile-modes default
echo "(suite: $SECONDS s of $budget)" | tee -a "$tables"
