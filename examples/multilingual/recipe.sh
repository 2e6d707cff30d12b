#!/usr/bin/env bash
# The multilingual recipe, end to end, with modhub's own CLI: Debian package descriptions (en, de, fr, it, es)
# → a multilingual vocabulary and small BERT → MLM pretraining → a TLM phase on parallel descriptions of training
# packages → the base rounded to F16 (what ships; every module is trained on exactly that base) → per language a
# MAD-X language adapter (seq_bn_inv, MLM) and an LT-SFT language diff → English topic classifiers, one per method
# (adapters, LoRA and IA³ trained on the English language adapter, diffs trained on the English language SFT, as
# MAD-X and LT-SFT train; full fine-tuning on the bare base) → zero-shot accuracy and macro-F1 on de, fr, it, es
# (en for reference) of each task module alone and stacked on the target language's adapter / summed with its
# SFT, next to the majority class → report.md. `ship.sh` then copies the demo artefacts into demo/.
#
#   bash examples/multilingual/recipe.sh [tiny|full]      (default tiny; BUDGET=... works too)
#
# tiny: a smoke run of the plumbing on small subsets (~10 min on 2 cores; the numbers are weak by design).
# full: the run whose artefacts ship in demo/ (4 layers, 128 wide, every MLM line once); stage times in
#       docs/multilingual.md.
# Stages are resumable: a finished stage leaves logs/<stage>.done and is skipped when the recipe runs again with
# the same WORK (FRESH=1 starts over). STOP_AFTER=<stage> stops after that stage.
# Environment: PORT (18700), WORK (.data/multilingual-run/<budget>), DATA (.data/multilingual), NICE (10),
# TLM=0 skips the TLM phase (to measure what it gives), SEEDS (task-module seeds, "0"), TASK_METHODS.
# Outputs in $WORK: base/ (F16), one folder per module, hub/, results.jsonl, times.tsv, report.md, logs/.
set -euo pipefail
{ # the whole script is parsed before it runs, so editing it during a run cannot derail that run
cd "$(dirname "$0")/../.."
BUDGET=${1:-${BUDGET:-tiny}}
PORT=${PORT:-18700}
DATA=${DATA:-.data/multilingual}
WORK=${WORK:-.data/multilingual-run/$BUDGET}
NICE=${NICE:-10}
TLM=${TLM:-1}
SEEDS=${SEEDS:-0}
TASK_METHODS=${TASK_METHODS:-seq_bn double_seq_bn lora ia3 bitfit diff-pruning lt-sft full}
LANGS="en de fr it es"

# Budgets: every knob can also be set from the environment (e.g. PRE_LINES=5000 bash ... full).
# *_LINES are per language (per language pair for TLM); MAXLEN is the trainer's --max-length everywhere but in
# the TLM phase (TLM_MAXLEN: a pair of descriptions, each cut to 300 characters, must fit).
set_default() { eval ": \"\${$1:=$2}\""; }
case "$BUDGET" in
  tiny) # the plumbing on small subsets; the numbers are weak by design
    for kv in LAYERS=2 HIDDEN=64 HEADS=4 VOCAB=8000 MAXLEN=64 TLM_MAXLEN=128 BATCH=16 VOCAB_LINES=4000 PRE_LINES=600 PRE_EPOCHS=1 PRE_LR=2e-3 \
      TLM_LINES=100 TLM_EPOCHS=1 TLM_LR=1e-3 LANG_LINES=300 LANG_EPOCHS=1 LANG_LR=1e-3 SFT_LANG_LR=1e-4 DEV_LINES=100 \
      TASK_LINES=1000 TASK_EPOCHS=10 ADAPTER_LR=1e-2 SFT_LR=1e-3 FULL_LR=1e-3 TEST_LINES=300; do set_default "${kv%%=*}" "${kv#*=}"; done ;;
  full) # the shipped run: a 4-layer, 128-wide base; every MLM line once; every English training example; every test row
    for kv in LAYERS=4 HIDDEN=128 HEADS=4 VOCAB=16000 MAXLEN=64 TLM_MAXLEN=128 BATCH=32 VOCAB_LINES=20000 PRE_LINES=1000000 PRE_EPOCHS=1 PRE_LR=1e-3 \
      TLM_LINES=3000 TLM_EPOCHS=1 TLM_LR=5e-4 LANG_LINES=5000 LANG_EPOCHS=1 LANG_LR=1e-3 SFT_LANG_LR=1e-4 DEV_LINES=500 \
      TASK_LINES=1000000 TASK_EPOCHS=3 ADAPTER_LR=1e-3 SFT_LR=1e-4 FULL_LR=1e-4 TEST_LINES=1000000; do set_default "${kv%%=*}" "${kv#*=}"; done ;;
  *) echo "BUDGET must be tiny or full, got '$BUDGET'" >&2; exit 2 ;;
esac
modhub() { nice -n "$NICE" node dist/server/cli.js "$@"; }
ts() { nice -n "$NICE" node -r ./test/helpers/register-ts.js "$@"; }
[ "${FRESH:-0}" = 1 ] && rm -rf "$WORK"
mkdir -p "$WORK/logs"
touch "$WORK/times.tsv"
# stage NAME CMD...: runs CMD unless logs/NAME.done exists, logs to logs/NAME.log, records wall seconds in times.tsv
stage() {
  local name=$1; shift
  if [ -f "$WORK/logs/$name.done" ]; then echo "== $name (done)" >&2; return; fi
  local t0=$SECONDS
  echo "== $name" >&2
  "$@" > "$WORK/logs/$name.log" 2>&1 || { echo "stage $name failed; see $WORK/logs/$name.log:" >&2; tail -n 20 "$WORK/logs/$name.log" >&2; exit 1; }
  printf '%s\t%s\n' "$name" $((SECONDS - t0)) >> "$WORK/times.tsv"
  touch "$WORK/logs/$name.done"
  tail -n 3 "$WORK/logs/$name.log" >&2
  if [ "${STOP_AFTER:-}" = "$name" ]; then echo "stopped after $name (STOP_AFTER)" >&2; exit 0; fi
}
# the trainer's common flags
TRAIN=(--max-length "$MAXLEN" --batch-size "$BATCH")

# 0. build, data
stage build nice -n "$NICE" npm run --silent build
if [ ! -f "$DATA/stats.json" ]; then
  stage data ts examples/multilingual/prepare-data.ts --out "$DATA"
fi

# 1. subsets for this budget (the data files are already in a seeded random order, so `head` samples)
S="$WORK/sets"; mkdir -p "$S"
: > "$S/vocab.txt"; : > "$S/pretrain.txt"; : > "$S/tlm.txt"
for l in $LANGS; do
  head -n "$VOCAB_LINES" "$DATA/mlm/$l.train.txt" >> "$S/vocab.txt"
  head -n "$PRE_LINES" "$DATA/mlm/$l.train.txt" >> "$S/pretrain.txt"
  head -n "$LANG_LINES" "$DATA/mlm/$l.train.txt" > "$S/$l.txt"
  head -n "$DEV_LINES" "$DATA/mlm/$l.dev.txt" > "$S/$l.dev.txt"
  head -n "$TEST_LINES" "$DATA/task/$l.test.jsonl" > "$S/$l.test.jsonl"
  [ "$l" = en ] || head -n "$TLM_LINES" "$DATA/tlm/en-$l.txt" >> "$S/tlm.txt"
done
head -n "$TASK_LINES" "$DATA/task/en.train.jsonl" > "$S/en.train.jsonl"
cp "$DATA/task/en.dev.jsonl" "$S/en.dev.jsonl"

# 2. base: vocabulary on every language, random init, MLM pretraining, then (TLM=1) translation LM on pairs,
# then rounded to F16: the shipped base, and the one every module below is trained on (same fingerprint)
stage base-tiny modhub base tiny --out "$WORK/random" --layers "$LAYERS" --hidden "$HIDDEN" --heads "$HEADS" \
  --vocab-size "$VOCAB" --max-positions 128 --corpus "$S/vocab.txt" --seed 0
stage pretrain-mlm modhub train --method full --task mlm --base "$WORK/random" --data "$S/pretrain.txt" --dev "$S/en.dev.txt" \
  --epochs "$PRE_EPOCHS" --lr "$PRE_LR" "${TRAIN[@]}" --seed 0 --keep last --eval-every 1000 --out "$WORK/pretrain-mlm" --save-base "$WORK/base-mlm"
if [ "$TLM" = 1 ]; then
  # TLM lines mixed with as many monolingual lines, so the model keeps seeing single-language input
  cat "$S/tlm.txt" > "$S/tlm-mixed.txt"; shuf -n "$(wc -l < "$S/tlm.txt")" --random-source=<(yes) "$S/pretrain.txt" >> "$S/tlm-mixed.txt"
  shuf --random-source=<(yes) "$S/tlm-mixed.txt" -o "$S/tlm-mixed.txt"
  stage pretrain-tlm modhub train --method full --task mlm --base "$WORK/base-mlm" --data "$S/tlm-mixed.txt" --dev "$S/en.dev.txt" \
    --epochs "$TLM_EPOCHS" --lr "$TLM_LR" --max-length "$TLM_MAXLEN" --batch-size "$BATCH" --seed 0 --keep last --out "$WORK/pretrain-tlm" --save-base "$WORK/base-f32"
else
  stage copy-base cp -rT "$WORK/base-mlm" "$WORK/base-f32"
fi
stage base-f16 modhub base import "$WORK/base-f32" --out "$WORK/base" --dtype f16 --force

# 3. serve the base with a hub in $WORK/hub (SQLite + blobs; kept across resumed runs)
modhub serve --base "$WORK/base" --data "$WORK/hub" --port "$PORT" > "$WORK/logs/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
export MODHUB_HUB=http://127.0.0.1:$PORT
until curl -sf "$MODHUB_HUB/readyz" > /dev/null; do
  kill -0 $SERVER 2>/dev/null || { echo "server did not start; see $WORK/logs/serve.log" >&2; exit 1; }
  sleep 0.5
done
MODHUB_TOKEN=$(node dist/server/cli.js token create --scope admin --data "$WORK/hub" | head -n 1)
export MODHUB_TOKEN

# 4. language modules: MAD-X adapter (lang/<l>) and LT-SFT diff (lang-sft/<l>) per language
for l in $LANGS; do
  stage "lang-$l-adapter" modhub train --method seq_bn_inv --task mlm --base "$WORK/base" --data "$S/$l.txt" --dev "$S/$l.dev.txt" \
    --language "$l" --epochs "$LANG_EPOCHS" --lr "$LANG_LR" "${TRAIN[@]}" --seed 0 --id "lang/$l" --version 1.0.0 --out "$WORK/lang-$l" --push "$MODHUB_HUB"
  stage "lang-$l-sft" modhub train --method lt-sft --task mlm --base "$WORK/base" --data "$S/$l.txt" --dev "$S/$l.dev.txt" \
    --language "$l" --epochs "$LANG_EPOCHS" --lr "$SFT_LANG_LR" "${TRAIN[@]}" --seed 0 --id "lang-sft/$l" --version 1.0.0 --out "$WORK/lang-sft-$l" --push "$MODHUB_HUB"
done

# 5. English task modules, one per method and seed: topic/<method> (seed 0, shipped), topic-s<seed>/<method>
name_of() { case "$1" in seq_bn) echo pfeiffer;; double_seq_bn) echo houlsby;; *) echo "$1";; esac; }
kind_of() { case "$1" in bitfit|diff-pruning|lt-sft) echo diff;; full) echo full;; *) echo adapter;; esac; }
lr_of() { case "$(kind_of "$1")" in diff) echo "$SFT_LR";; full) echo "$FULL_LR";; *) echo "$ADAPTER_LR";; esac; }
ns_of() { [ "$1" = 0 ] && echo topic || echo "topic-s$1"; }
for seed in $SEEDS; do
  for m in $TASK_METHODS; do
    case "$(kind_of "$m")" in adapter) on=(--stack-on "$WORK/lang-en");; diff) on=(--stack-on "$WORK/lang-sft-en");; *) on=();; esac
    id="$(ns_of "$seed")/$(name_of "$m")"
    stage "task-$m-s$seed" modhub train --method "$m" --task classification --base "$WORK/base" --data "$S/en.train.jsonl" --dev "$S/en.dev.jsonl" \
      --epochs "$TASK_EPOCHS" "${TRAIN[@]}" --seed "$seed" "${on[@]}" --lr "$(lr_of "$m")" --id "$id" --version 1.0.0 --out "$WORK/$id" --push "$MODHUB_HUB"
  done
done

# 6. zero-shot evaluation per language and seed (en: the in-language reference); results.jsonl, one line per
# (language, seed, composition)
for seed in $SEEDS; do
  for l in $LANGS; do
    systems=()
    for m in $TASK_METHODS; do
      id="$(ns_of "$seed")/$(name_of "$m")"; n=$(name_of "$m")
      systems+=(--system "$n alone=$id")
      case "$(kind_of "$m")" in
        adapter) systems+=(--system "$n on lang adapter={\"stack\":[\"lang/$l\",\"$id\"]}");;
        diff) systems+=(--system "$n + lang SFT={\"sum\":[\"lang-sft/$l\",\"$id\"]}");;
      esac
    done
    stage "eval-$l-s$seed" ts examples/multilingual/eval.ts --data "$S/$l.test.jsonl" --train "$S/en.train.jsonl" --lang "$l" \
      --max-length "$MAXLEN" --tag "seed $seed" --out "$WORK/results.jsonl" "${systems[@]}"
  done
done
ts examples/multilingual/report.ts "$WORK" | tee "$WORK/report.md"
# 7. the full run's artefacts are the demo that `modhub serve` serves by default (SHIP=0 keeps demo/ as it is)
if [ "$BUDGET" = full ] && [ "${SHIP:-1}" = 1 ]; then bash examples/multilingual/ship.sh "$WORK"; fi
exit
}
