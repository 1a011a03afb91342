#!/usr/bin/env bash
# GPU check of the live backend (issue 5): at most BUDGET_S (default 350) seconds on one H100.
#
# Run from the repository root on a machine whose python3 has torch with CUDA and numpy, after
#   python3 -m pip install --no-deps --no-build-isolation .   (plus gymnasium; no Ray, OR-Tools, torch-geometric)
# Results in $OUT (default ./gpu_check_out), 6 files: gpu_check.log (everything printed), tables.tar.gz (the
# calibration tables, schema schedgym.calibration/v1), fid_grid_{small,1b}.json (fidelity with the grid-swept
# table), fid_live_{small,1b}.json (fidelity with the table fitted to a live run of another segment).
# Each step has its own timeout, capped by what is left of BUDGET_S (a step with under 15 s left is skipped),
# so one hang does not eat the budget; a failed step does not stop the next.
#
#   bash scripts/gpu_check.sh            # or: OUT=/some/dir BUDGET_S=300 bash scripts/gpu_check.sh
set -u
OUT="${OUT:-gpu_check_out}"
BUDGET_S="${BUDGET_S:-350}"
mkdir -p "$OUT"
TABLES="$(mktemp -d)"
LOG="$OUT/gpu_check.log"
: >"$LOG"
# PYTHONSAFEPATH: the repo root must not shadow the installed package (its schedgym/ lacks envs/, hwbackend/).
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 PYTHONSAFEPATH=1
PY="${PYTHON:-python3}"
CLI=("$PY" -c 'import sys; from schedgym.cli import main; sys.exit(main(sys.argv[1:]))')  # the schedgym CLI
step() {  # step NAME SECONDS CMD...: run with a timeout (capped by the budget left), log output and exit status
    local name=$1 secs=$2; shift 2
    local left=$((BUDGET_S - SECONDS))
    if ((left < 15)); then echo "=== $name: SKIPPED (${left}s of the budget left)" | tee -a "$LOG"; return; fi
    ((secs > left)) && secs=$left
    local t0=$SECONDS
    echo "=== $name (timeout ${secs}s): $*" | tee -a "$LOG"
    timeout --kill-after=5 "$secs" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "=== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$LOG"
}

step env 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; uptime; \
  $PY -c 'import torch, numpy, gymnasium, schedgym; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \
torch.cuda.get_device_name(0), \"numpy\", numpy.__version__, \"gymnasium\", gymnasium.__version__)'"

# 1. The live tests on the device (engine, env, calibration, KV transfer, prefix cache; Ray tests need Ray: skipped).
DEVICE="${DEVICE:-cuda}"
step tests 75 env SCHEDGYM_TEST_DEVICE="$DEVICE" "$PY" -m pytest -q -p no:cacheprovider tests/test_live_engine.py \
    tests/test_live_env.py tests/test_live_calibration.py tests/test_live_kv_transfer.py tests/test_live_prefix.py

# 2. Per model: (a) calibration fitted to a live run of Azure conv requests 128-191, then fidelity with it;
#    (b) grid calibration (up to the fidelity runs' batch shapes, so nothing extrapolates far), then fidelity.
#    The compared segment is Azure conv requests 64-127 (never the calibration's), real token lengths
#    (token_scale 1.0), arrivals x8, one engine per GPU (thread backend: no Ray).
# DEVICE, MODELS, CAL_ARGS, SEG_ARGS, GRID_REPEATS override the defaults (e.g. a CPU smoke run of the script).
read -r -a MODELS <<<"${MODELS:-small 1b}"
# Decode contexts up to 2048 per sequence: the live sequences reach ~1000-2000 tokens. (Run 3's small decodes ran
# x0.72 the grid table; extrapolating past 1024 explains at most 0.4 ms of it: the cause is not known.)
read -r -a CAL <<<"${CAL_ARGS:---prefill 0,1,64,256,1024,2048,4000 --decode 0,1,4,16,64 --context 128,2048}"
read -r -a SEG <<<"${SEG_ARGS:---trace azure-conv-2023 --requests 64 --rate-scale 8 --token-scale 1.0 --engines 1 \
--num-blocks 4096 --context-limit 4096 --backend thread}"
declare -A T=([small]=50 [1b]=80)
# Live-fitted tables first (the method the CPU figures use: the table and the host's variability are fitted to a
# live run of another segment), then the grid-swept tables.
for m in "${MODELS[@]}"; do
    step "cal_live_$m" "${T[$m]:-60}" "${CLI[@]}" calibrate --from-live --model "$m" --device "$DEVICE" \
        "${CAL[@]}" "${SEG[@]}" --start 128 --out "$TABLES/cal_live_$m.json"
    step "fid_live_$m" "${T[$m]:-60}" "${CLI[@]}" fidelity --model "$m" --device "$DEVICE" \
        --calibration "$TABLES/cal_live_$m.json" "${SEG[@]}" --start 64 --out "$OUT/fid_live_$m.json"
done
for m in "${MODELS[@]}"; do
    step "cal_grid_$m" "${T[$m]:-60}" "${CLI[@]}" calibrate --model "$m" --device "$DEVICE" "${CAL[@]}" \
        --repeats "${GRID_REPEATS:-5}" --out "$TABLES/cal_grid_$m.json"
    step "fid_grid_$m" "${T[$m]:-60}" "${CLI[@]}" fidelity --model "$m" --device "$DEVICE" \
        --calibration "$TABLES/cal_grid_$m.json" "${SEG[@]}" --start 64 --out "$OUT/fid_grid_$m.json"
done
tar -czf "$OUT/tables.tar.gz" -C "$TABLES" .
echo "=== done after $SECONDS s; files in $OUT:" | tee -a "$LOG"
ls -l "$OUT" | tee -a "$LOG"
