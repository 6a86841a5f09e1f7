#!/usr/bin/env bash
# Every GPU measurement of issue #12 in one run (device time is short: one call, no retries).
# Writes the tables to ${OUT:-results/gpu}/gpu_tables.md and the test log beside it; the
# tables go into docs/speed-gpu.md by hand.
#   bash benchmarks/gpu_suite.sh            # on a machine with a CUDA GPU and torch with CUDA
# Checked on CPU with:  GPU_SUITE_DEVICE=cpu GPU_SUITE_QUICK=1 bash benchmarks/gpu_suite.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-results/gpu}
mkdir -p "$out"
py=${PYTHON:-python}
device=${GPU_SUITE_DEVICE:-cuda}
quick=${GPU_SUITE_QUICK:+--quick}
batches="1 8 32"
stage_batches="1 32"
rounds=20
[ -n "$quick" ] && batches="1" && stage_batches="1" && rounds=2
tables="$out/gpu_tables.md"
{
  echo "# GPU tables ($(date -u +%F), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi'))"
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} > "$tables"
# 1. no host sync where the policy fixes the counts, one per AF stage elsewhere (skips without CUDA)
$py -m pytest -q tests/test_execution.py > "$out/test_execution.log" 2>&1
echo "test_execution: exit $? (log: test_execution.log)" >> "$tables"
grep -E "passed|failed|FAILED|Error" "$out/test_execution.log" | tail -8 >> "$tables"
# 2. sync-free vs one read per stage vs a sync per block vs masked (+ CUDA graph), sparse vs masked,
#    more is less, region-sparse (counts fixed by the policies: no syncs) vs masked (fp32, TF32 convs)
$py benchmarks/bench_models.py --device "$device" --batches $batches --rounds "$rounds" $quick \
    --sections sync sparse more spatial >> "$tables" 2>&1
# 3. more is less and the sparse table in bf16 autocast (auto picks bf16 on CUDA)
$py benchmarks/bench_models.py --device "$device" --bf16 --batches $batches --rounds "$rounds" $quick \
    --sections more >> "$tables" 2>&1
# 4. where the time goes, per stage (batch 1 and 32)
$py benchmarks/bench_models.py --device "$device" --batches $stage_batches --rounds "$rounds" $quick \
    --sections stages >> "$tables" 2>&1
# 5. last (compiling takes minutes; the tables above are written already): more is less under
#    torch.compile, default and reduce-overhead (CUDA graphs), static-k AF against TSM, batch 1
$py benchmarks/bench_models.py --device "$device" --batches 1 --rounds "$rounds" $quick \
    --sections compile >> "$tables" 2>&1
cat "$tables"
