#!/usr/bin/env bash
# Character-level LM comparison (H3 arXiv 2212.14052 §5.1, Table 4's shape: hybrid ≤ Transformer ≈ H3 < S4D):
# five 4-layer language models on Tiny Shakespeare at equal parameter count (≈285K, the width of each
# chosen to match the H3 model's 286,912 within 1.3%) and equal tokens (the same steps × batch × window:
# EPOCHS (default 2) × 500 steps × 32 windows × 256 characters, 8.2M characters at the default),
# validation bits per character at the end.
#
#   bash scripts/charlm_compare.sh [OUT_DIR] [extra --key=value overrides for every run...]
#
#   transformer  attention in every layer, learned positions          d_model 73
#                (one table at the input, as GPT-2)
#   h3           H3 in every layer (no positions)                     d_model 64
#   hybrid       H3, attention at layers 1 and 2 (n/3, 2n/3; as the   d_model 70
#                H3 repo's 24-layer model: 8 and 16), no positions
#   s4d          S4D in every layer, GLU output map (LMConfig's        d_model 74
#                default)
#   s4d-linear   S4D in every layer, linear output map (the H3 repo's   d_model 78
#                standalone S4D, as the synthetic baseline)
#
# CARRY=1 trains every model with its state carried from window to window (truncated BPTT:
# --data.carry_state=true, contiguous streams, attention within its window); the table then also
# reads the test text as one stream (stream bpc, in every run's results.json).
#
# MODELS="h3 s4d" trains (and tabulates) only those. JOBS (default 1) runs that many at once, one thread each (23–34 min a run at EPOCHS=2 with 3–5 jobs sharing the 2 cores). A stopped run continues with
#   hippos train --resume OUT_DIR/<model>;  the table alone:  bash scripts/charlm_compare.sh OUT_DIR --table-only
set -euo pipefail
OUT=${1:-runs/charlm-compare}
shift || true
DATA=${HIPPOS_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
JOBS=${JOBS:-1}
EPOCHS=${EPOCHS:-2}
MODELS=${MODELS:-"transformer h3 hybrid s4d s4d-linear"}  # or a subset, in this order
CARRY_ARGS=()
if [ "${CARRY:-0}" = 1 ]; then CARRY_ARGS=(--data.carry_state=true); fi

args_for() {
  case $1 in
    transformer) echo "--model.mixer=attention --model.attn_pos=learned --model.d_model=73" ;;
    h3)          echo "--model.mixer=h3 --model.d_model=64" ;;
    hybrid)      echo "--model.mixer=h3 --model.attn_layers=[1,2] --model.d_model=70" ;;
    s4d)         echo "--model.mixer=s4d --model.d_model=74" ;;
    s4d-linear)  echo "--model.mixer=s4d --model.s4_output=linear --model.d_model=78" ;;
  esac
}

if [ "${1:-}" != "--table-only" ]; then
  mkdir -p "$OUT"
  running=0
  for m in $MODELS; do
    if [ -f "$OUT/$m/results.json" ]; then echo "$m: done"; continue; fi
    if [ -f "$OUT/$m/checkpoint/trainer_state.json" ]; then
      cmd=(hippos train --resume "$OUT/$m" --no-progress)
    else
      # shellcheck disable=SC2046
      cmd=(hippos train charlm $(args_for "$m") --model.n_layers=4 --epochs="$EPOCHS" --num_threads=1
           --data_dir="$DATA" --out_dir="$OUT/$m" --force --no-progress "${CARRY_ARGS[@]}" "$@")
    fi
    echo "$m: ${cmd[*]}"
    "${cmd[@]}" >> "$OUT/$m.log" 2>&1 &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
  done
  wait
fi

python - "$OUT" $MODELS <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
# runs since the three-way split: test = the last 5% of the text, val the 5% before it; older runs
# (data.test_fraction=0) score the val text (the last 10%) as "test"
print("| model | parameters | tokens | training | test bpc (final) | test bpc (best-val weights) | stream bpc (final) | split | train time |")
print("|---|---|---|---|---|---|---|---|---|")
for name in sys.argv[2:]:  # MODELS, in order
    f = out / name / "results.json"
    if not f.exists():
        print(f"| {name} | (not finished: hippos train --resume {out / name}) | | | | | | | |")
        continue
    r = json.loads(f.read_text())
    c = json.loads((out / name / "config.json").read_text())
    tokens = r["step"] * c["batch_size"] * c["data"]["seq_len"]
    split = "val as test (old run)" if c["data"].get("test_fraction", 0) == 0 else "held-out test"
    how = "state carried" if c["data"].get("carry_state") else "random windows"
    stream = r.get("test_extra", {}).get("stream_bpc")
    stream = f"{stream:.3f}" if stream is not None else "—"
    print(f"| {name} | {r.get('n_params', 0):,} | {tokens / 1e6:.1f}M | {how} | {r['test_bpc']:.3f} | {r['test_bpc_best_val']:.3f} "
          f"| {stream} | {split} | {r['train_time_s'] / 60:.0f} min |")
PY
