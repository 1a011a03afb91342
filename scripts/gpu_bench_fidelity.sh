#!/usr/bin/env bash
# Fidelity with repeats on a GPU (issue 5): scripts/bench_fidelity.py for two model presets on one engine, the
# segment and cluster of scripts/gpu_check.sh (azure-conv-2023[64:128] compared, [128:192] for each repeat's
# live-fitted table, arrivals x8, real token lengths), host probes around every compared run. Writes to $OUT:
# bench_$M1.log, bench_$M2.log (everything printed) and bench_tables.tar.gz (tables and reports).
#   OUT=out bash scripts/gpu_bench_fidelity.sh            # small x4 repeats, then 1b x3 (about 6 minutes on an H100)
#   OUT=out PY=.venv/bin/python DEV=cpu M1=tiny M2=small TOK=0.05 R1=2 R2=1 bash scripts/gpu_bench_fidelity.sh  # CPU smoke
set -o pipefail
OUT="${OUT:-gpu_bench_out}"; mkdir -p "$OUT"
export PYTHONSAFEPATH=1 OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
PY=${PY:-python3}; DEV=${DEV:-cuda}; M1=${M1:-small}; M2=${M2:-1b}
SEG="--trace azure-conv-2023 --start 64 --calib-start 128 --requests 64 --rate-scale 8 --token-scale ${TOK:-1.0} --engines 1 --num-blocks 4096 --context-limit 4096 --backend thread"
timeout ${T1:-150} $PY scripts/bench_fidelity.py --repeats ${R1:-4} --drift-probe --model $M1 --device $DEV $SEG --out /tmp/bf_$M1 > $OUT/bench_$M1.log 2>&1; echo "exit $?"
grep -A40 "## summary" $OUT/bench_$M1.log | grep -v "^  p90" 
timeout ${T2:-300} $PY scripts/bench_fidelity.py --repeats ${R2:-3} --drift-probe --model $M2 --device $DEV $SEG --out /tmp/bf_$M2 > $OUT/bench_$M2.log 2>&1; echo "exit $?"
grep -A40 "## summary" $OUT/bench_$M2.log | grep -v "^  p90"
tar -czf $OUT/bench_tables.tar.gz -C /tmp bf_$M1 bf_$M2
