#!/usr/bin/env bash
# The Long Range Arena arms on one GPU machine, all at once: each arm is its own `hippos lra`
# process (one CPU thread each, the GPU shared), cut cleanly at a deadline (SIGTERM: the trainer
# finishes its step and writes a checkpoint, which `hippos lra` resumes on any device).
#
#   ARMS="pathfinder:s4 lra-text:transformer:5 ..." DEADLINE_S=480 bash scripts/lra_gpu.sh
#
# An arm is TASK:MODEL[:EPOCHS[:OUT_SUBDIR[:OPTIONS]]] (EPOCHS: `hippos lra --epochs`, default the
# task's; OUT_SUBDIR: default `lra`; OPTIONS: comma-separated `hippos lra` keys for this arm alone,
# e.g. pathfinder:s4:12:pf-bclip:--model.b_clip=2,--lr=0.01 — a variant wants its own OUT_SUBDIR). Runs go to $RUNS/<subdir>/<task>-<model>; at the end the results
# (metrics, curves, configs, the tables, logs) are packed into $OUT/lra_results.tar.gz and the
# checkpoints into $OUT/lra_ckpt.tar.part-* (to resume elsewhere with the same command).
# Data: $HIPPOS_DATA (imdb/, cifar10-subset/) and $HIPPOS_CACHE, generated there when missing
# (ListOps in about 2 minutes, Pathfinder with --data.workers=$PF_WORKERS). First it runs
# scripts/gpu_check.py (the GPU against float64 on the CPU; SKIP_CHECK=1 skips it).
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
OUT="${OUT:-/tmp/lra-gpu-out}"
RUNS="${RUNS:-/tmp/lra-gpu}"
DEVICE="${DEVICE:-cuda}"
DEADLINE_S="${DEADLINE_S:-480}"   # seconds from the start of this script to the cut
PF_WORKERS="${PF_WORKERS:-8}"
PY="${PY:-python3}"
EXTRA="${EXTRA:-}"  # more `hippos lra` options for every arm (e.g. --smoke)
ARMS="${ARMS:-pathfinder:s4 pathfinder:s4d pathfinder:transformer listops:s4d listops:transformer lra-text:s4d lra-text:transformer lra-image:s4d lra-image:transformer}"
mkdir -p "$OUT" "$RUNS/logs"
start=$(date +%s)

nvidia-smi -L 2>/dev/null || true
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
[ "$DEVICE" = cpu ] || [ -n "${SKIP_CHECK:-}" ] || timeout 120 $PY scripts/gpu_check.py --device "$DEVICE" 2>&1 | tee "$OUT/gpu_check.txt"

# ListOps' and Pathfinder's sets are generated once each (Pathfinder with workers) before their
# arms start: an arm waits for its task's marker file.
gen_set() {  # TASK: generate (or check) the task's default set, then leave a marker
  timeout $((DEADLINE_S - 60)) $PY scripts/lra_data.py "$1" --workers "$PF_WORKERS" > "$RUNS/logs/data-$1.log" 2>&1
  touch "$RUNS/logs/data-$1.done"
}
for task in listops pathfinder; do
  case " $ARMS " in *" $task:"*) gen_set "$task" & ;; esac
done

for arm in $ARMS; do
  IFS=: read -r task model epochs sub opts <<< "$arm"
  opts="${opts//,/ }"
  sub="${sub:-lra}"
  log="$RUNS/logs/$sub-$task-$model.log"
  (
    case "$task" in listops|pathfinder) while [ ! -e "$RUNS/logs/data-$task.done" ]; do sleep 2; done;; esac
    left=$((start + DEADLINE_S - $(date +%s)))
    [ "$left" -gt 10 ] || { echo "no time left" > "$log"; exit 0; }
    timeout -s TERM -k 60 "$left" $PY -m hippos lra --tasks "$task" --models "$model" ${epochs:+--epochs "$epochs"} \
      --out-dir "$RUNS/$sub" --device "$DEVICE" --num-threads 1 --no-progress $EXTRA $opts > "$log" 2>&1
    echo "exit $?" >> "$log"
  ) &
done
tick=0
while [ -n "$(jobs -r)" ]; do  # a line a minute: how far each arm got
  sleep 5; tick=$((tick + 5))
  [ $((tick % 60)) -eq 0 ] || continue
  echo "--- $(( $(date +%s) - start )) s"
  for f in "$RUNS"/logs/*.log; do echo "$(basename "$f"): $(tail -n 1 "$f" | cut -c1-150)"; done
done

for sub in "$RUNS"/*/; do [ -f "$sub/lra.md" ] && { echo "== $sub"; cat "$sub/lra.md"; }; done | tee "$OUT/lra_tables.md"
tar czf "$OUT/lra_results.tar.gz" -C "$RUNS" --exclude=checkpoint --exclude='*.safetensors' --exclude=.lock .
tar cf - -C "$RUNS" --exclude=logs --exclude=metrics.csv --exclude=curves.png . | split -b 15m - "$OUT/lra_ckpt.tar.part-"
ls -la "$OUT"
echo "lra_gpu: $(( $(date +%s) - start )) s"
