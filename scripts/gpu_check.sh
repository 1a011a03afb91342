#!/usr/bin/env bash
# GPU check of the live backend (issue 5), about 6 minutes on one H100.
#
# Run from the repository root on a machine whose python3 has torch with CUDA and numpy, after
#   python3 -m pip install --no-deps .   (plus gymnasium; Ray, OR-Tools and torch-geometric are not needed)
# Results go to $OUT (default ./gpu_check_out): gpu_check.log (everything printed), cal_small.json, cal_1b.json
# (calibration tables, schema schedgym.calibration/v1), fid_small.json, fid_1b.json (fidelity reports).
# Each step has its own timeout so one hang does not eat the budget; a failed step does not stop the next.
#
#   bash scripts/gpu_check.sh            # or: OUT=/some/dir bash scripts/gpu_check.sh
set -u
OUT="${OUT:-gpu_check_out}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"
# PYTHONSAFEPATH: the repo root must not shadow the installed package (its schedgym/ lacks envs/, hwbackend/).
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONSAFEPATH=1
PY="${PYTHON:-python3}"
CLI=("$PY" -c 'import sys; from schedgym.cli import main; sys.exit(main(sys.argv[1:]))')  # the schedgym CLI
step() {  # step NAME SECONDS CMD...: run with a timeout, log its output and exit status
    local name=$1 secs=$2; shift 2
    local t0=$SECONDS
    echo "=== $name (timeout ${secs}s): $*" | tee -a "$LOG"
    timeout --kill-after=10 "$secs" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
}

step env 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; uptime; \
  $PY -c 'import torch, numpy, gymnasium, schedgym; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \
torch.cuda.get_device_name(0), \"numpy\", numpy.__version__, \"gymnasium\", gymnasium.__version__)'"

# 1. The live tests on CUDA (engine, env, calibration; the Ray test is CPU-only and skipped).
step tests 100 env SCHEDGYM_TEST_DEVICE="${DEVICE:-cuda}" "$PY" -m pytest -q -p no:cacheprovider tests/test_live_engine.py \
    tests/test_live_env.py tests/test_live_calibration.py

# 2. Calibration tables (grid up to the fidelity runs' batch shapes, so nothing extrapolates far) and
# 3. fidelity: Azure conv requests 64-127 (the calibration comes from the grid sweep, not from this replay),
#    real token lengths (token_scale 1.0), arrivals x8, one engine per GPU (thread backend: no Ray).
# DEVICE, MODELS, CAL_ARGS, FID_ARGS override the defaults (e.g. a CPU smoke run of the script itself).
DEVICE="${DEVICE:-cuda}"
read -r -a MODELS <<<"${MODELS:-small 1b}"
read -r -a CAL <<<"${CAL_ARGS:---prefill 0,1,64,256,1024,2048,4000 --decode 0,1,4,16,64 --context 128,1024 --repeats 5}"
read -r -a FID <<<"${FID_ARGS:---trace azure-conv-2023 --start 64 --requests 64 --rate-scale 8 --token-scale 1.0 \
--engines 1 --num-blocks 4096 --context-limit 4096 --backend thread}"
declare -A CAL_T=([small]=50 [1b]=80) FID_T=([small]=75 [1b]=90)
for m in "${MODELS[@]}"; do
    step "cal_$m" "${CAL_T[$m]:-60}" "${CLI[@]}" calibrate --model "$m" --device "$DEVICE" "${CAL[@]}" --out "$OUT/cal_$m.json"
done
for m in "${MODELS[@]}"; do
    step "fid_$m" "${FID_T[$m]:-60}" "${CLI[@]}" fidelity --model "$m" --device "$DEVICE" --calibration "$OUT/cal_$m.json" \
        "${FID[@]}" --out "$OUT/fid_$m.json"
done

echo "=== done; files in $OUT:" | tee -a "$LOG"
ls -l "$OUT" | tee -a "$LOG"
