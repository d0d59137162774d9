#!/usr/bin/env bash
# Everything a GPU machine has to show for embspace, in one call, each step under its own time limit:
#
#   OUT=gpu-session bash benchmarks/gpu_session.sh [STEP ...]
#
# Steps (default: all, in this order; about 9 minutes at most on one H100/H200):
#   environment  torch / Triton / GPU versions                                     (20 s)
#   gpu-tests    pytest -m gpu tests/test_gpu.py: every fused reduction vs float64  (110 s)
#   triton       tests/test_triton.py with the kernels compiled, not interpreted    (100 s)
#   nccl         pytest -m gpu tests/test_distributed.py: NCCL ranks vs one process (60 s)
#   kernels      benchmarks/gpu_kernels.py at N = 10^5 (every method) and 10^6      (180 s)
#   measure      benchmarks/measure_scale.py: embspace measure on 10^6 pairs        (100 s)
#
# It runs from the repository root with the machine's own python3 (PYTHON= to choose another) and PYTHONPATH=.,
# installs nothing, writes each step's log and the benchmark tables under $OUT, and prints a summary last.
set -u
OUT=${OUT:-gpu-session}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset TRITON_INTERPRET
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(environment gpu-tests triton nccl kernels measure)
summary=()

run_step() {  # run_step NAME SECONDS COMMAND...: the command's output goes to $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >>"$OUT/$name.log" 2>&1
    local rc=$?
    local last
    last=$(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | cut -c1-100)
    summary+=("$(printf '%-12s exit %-3s %4s s  %s' "$name" "$rc" "$((SECONDS - start))" "$last")")
}

for step in "${steps[@]}"; do
    : >"$OUT/$step.log"
    case $step in
        environment)
            run_step environment 20 "$PY" -c "import torch, triton; p = torch.cuda.get_device_properties(0); \
print(torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name(0), p.multi_processor_count, \
'SMs', round(p.total_memory / 2**30), 'GiB, capability', torch.cuda.get_device_capability(0))"
            nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.used --format=csv \
                >>"$OUT/environment.log" 2>&1 ;;
        gpu-tests) run_step gpu-tests 110 "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider ;;
        triton) run_step triton 100 "$PY" -m pytest -q tests/test_triton.py -p no:cacheprovider ;;
        nccl) run_step nccl 60 "$PY" -m pytest -q -m gpu tests/test_distributed.py -p no:cacheprovider ;;
        kernels)
            run_step kernels 100 "$PY" benchmarks/gpu_kernels.py --n 100000 --repeats 3 --timeout 60 \
                --out "$OUT/kernels-1e5"
            run_step kernels 80 "$PY" benchmarks/gpu_kernels.py --n 1000000 --repeats 2 --timeout 60 \
                --methods fused-fp16 fused-bf16 gemm-fp16 chunked-bf16 retrieval-fused --out "$OUT/kernels-1e6" ;;
        measure) run_step measure 100 "$PY" benchmarks/measure_scale.py --n 1000000 --device cuda --out "$OUT" ;;
        *) echo "unknown step $step" >&2; exit 2 ;;
    esac
done
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
