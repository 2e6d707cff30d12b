#!/usr/bin/env bash
# The multilingual recipe, end to end, with modhub's own CLI: Debian package descriptions (en, de, fr, it, es)
# → a multilingual vocabulary and tiny BERT → MLM pretraining → a TLM phase on parallel descriptions of training
# packages → per language a MAD-X language adapter (seq_bn_inv, MLM) and an LT-SFT language diff → English
# topic classifiers (Pfeiffer adapter stacked on the English adapter, LT-SFT, full fine-tuning) → zero-shot
# accuracy on de, fr, it, es (and en for reference) for: the task module alone, stacked on the target language's
# adapter, and the LT-SFT language + task diffs summed; plus the majority-class baseline.
#
#   bash examples/multilingual/recipe.sh [tiny|full]      (default tiny; BUDGET=... works too)
#
# tiny: a smoke run of the plumbing on small subsets (~10 min on 2 busy cores; the numbers are weak by design).
# full: the real run (a 4-layer, 128-wide base, larger subsets, every test row): not run yet; ~5-6 h on 2 busy
#       cores, estimated from 2 s per 16-sequence MLM step of that base.
# Environment: PORT (18700), WORK (.data/multilingual-run/<budget>), DATA (.data/multilingual), NICE (19),
# FRESH=1 re-prepares the data, TLM=0 skips the TLM phase (to measure what it gives).
# Outputs in $WORK: base/, modules, results.jsonl, times.tsv, report.md, logs/.
set -euo pipefail
{ # the whole script is parsed before it runs, so editing it during a run cannot derail that run
cd "$(dirname "$0")/../.."
BUDGET=${1:-${BUDGET:-tiny}}
PORT=${PORT:-18700}
DATA=${DATA:-.data/multilingual}
WORK=${WORK:-.data/multilingual-run/$BUDGET}
NICE=${NICE:-19}
TLM=${TLM:-1}
LANGS="en de fr it es"
TARGETS="de fr it es"

# Budgets: every knob can also be set from the environment (e.g. PRE_LINES=5000 bash ... full).
# *_LINES are per language (per language pair for TLM); MAXLEN is the trainer's --max-length everywhere.
set_default() { eval ": \"\${$1:=$2}\""; }
case "$BUDGET" in
  tiny) # the plumbing on small subsets: ~10 min on 2 busy cores; the numbers are weak by design
    for kv in LAYERS=2 HIDDEN=64 HEADS=4 VOCAB=8000 MAXLEN=64 VOCAB_LINES=4000 PRE_LINES=600 PRE_EPOCHS=1 PRE_LR=2e-3 \
      TLM_LINES=100 TLM_EPOCHS=1 TLM_LR=1e-3 LANG_LINES=300 LANG_EPOCHS=1 LANG_LR=1e-3 SFT_LANG_LR=1e-4 DEV_LINES=100 \
      TASK_LINES=1000 TASK_EPOCHS=10 ADAPTER_LR=1e-2 SFT_LR=1e-3 FULL_LR=1e-3 TEST_LINES=300; do set_default "${kv%%=*}" "${kv#*=}"; done ;;
  full) # the real run: a 4-layer, 128-wide base; every English training example; every test row
    for kv in LAYERS=4 HIDDEN=128 HEADS=4 VOCAB=16000 MAXLEN=128 VOCAB_LINES=1000000 PRE_LINES=10000 PRE_EPOCHS=1 PRE_LR=1e-3 \
      TLM_LINES=3000 TLM_EPOCHS=1 TLM_LR=5e-4 LANG_LINES=5000 LANG_EPOCHS=1 LANG_LR=1e-3 SFT_LANG_LR=1e-4 DEV_LINES=500 \
      TASK_LINES=1000000 TASK_EPOCHS=3 ADAPTER_LR=1e-3 SFT_LR=1e-4 FULL_LR=1e-4 TEST_LINES=1000000; do set_default "${kv%%=*}" "${kv#*=}"; done ;;
  *) echo "BUDGET must be tiny or full, got '$BUDGET'" >&2; exit 2 ;;
esac
modhub() { nice -n "$NICE" node dist/server/cli.js "$@"; }
ts() { nice -n "$NICE" node -r ./test/helpers/register-ts.js "$@"; }
mkdir -p "$WORK/logs"
: > "$WORK/times.tsv"
# stage NAME CMD...: runs CMD, logs to logs/NAME.log, records wall seconds in times.tsv
stage() {
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name" >&2
  "$@" > "$WORK/logs/$name.log" 2>&1 || { echo "stage $name failed; see $WORK/logs/$name.log:" >&2; tail -n 20 "$WORK/logs/$name.log" >&2; exit 1; }
  printf '%s\t%s\n' "$name" $((SECONDS - t0)) >> "$WORK/times.tsv"
  tail -n 3 "$WORK/logs/$name.log" >&2
}
# the trainer's common flags
TRAIN=(--max-length "$MAXLEN" --seed 0)

# 0. build, data
stage build nice -n "$NICE" npm run --silent build
if [ "${FRESH:-0}" = 1 ] || [ ! -f "$DATA/stats.json" ]; then
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
done
for l in $TARGETS; do head -n "$TLM_LINES" "$DATA/tlm/en-$l.txt" >> "$S/tlm.txt"; done
head -n "$TASK_LINES" "$DATA/task/en.train.jsonl" > "$S/en.train.jsonl"
cp "$DATA/task/en.dev.jsonl" "$S/en.dev.jsonl"

# 2. base: vocabulary on every language, random init, MLM pretraining, then (TLM=1) translation LM on pairs
stage base-tiny modhub base tiny --out "$WORK/random" --layers "$LAYERS" --hidden "$HIDDEN" --heads "$HEADS" \
  --vocab-size "$VOCAB" --max-positions 128 --corpus "$S/vocab.txt" --seed 0
stage pretrain-mlm modhub train --method full --task mlm --base "$WORK/random" --data "$S/pretrain.txt" \
  --epochs "$PRE_EPOCHS" --lr "$PRE_LR" "${TRAIN[@]}" --out "$WORK/pretrain-mlm" --save-base "$WORK/base-mlm"
if [ "$TLM" = 1 ]; then
  # TLM lines mixed with as many monolingual lines, so the model keeps seeing single-language input
  cat "$S/tlm.txt" > "$S/tlm-mixed.txt"; head -n "$(wc -l < "$S/tlm.txt")" "$S/pretrain.txt" >> "$S/tlm-mixed.txt"
  stage pretrain-tlm modhub train --method full --task mlm --base "$WORK/base-mlm" --data "$S/tlm-mixed.txt" \
    --epochs "$TLM_EPOCHS" --lr "$TLM_LR" "${TRAIN[@]}" --out "$WORK/pretrain-tlm" --save-base "$WORK/base"
else
  rm -rf "$WORK/base"; cp -r "$WORK/base-mlm" "$WORK/base"
fi

# 3. serve the base with an empty hub (SQLite + blobs in $WORK/hub)
rm -rf "$WORK/hub"
nice -n "$NICE" node dist/server/cli.js serve --base "$WORK/base" --data "$WORK/hub" --port "$PORT" > "$WORK/logs/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
export MODHUB_HUB=http://127.0.0.1:$PORT
until curl -sf "$MODHUB_HUB/healthz" > /dev/null; do
  kill -0 $SERVER 2>/dev/null || { echo "server did not start; see $WORK/logs/serve.log" >&2; exit 1; }
  sleep 0.5
done
MODHUB_TOKEN=$(node dist/server/cli.js token create --scope admin --data "$WORK/hub" | head -n 1)
export MODHUB_TOKEN

# 4. language modules: MAD-X adapter and LT-SFT diff per language
for l in $LANGS; do
  stage "lang-$l-adapter" modhub train --method seq_bn_inv --task mlm --base "$WORK/base" --data "$S/$l.txt" --dev "$S/$l.dev.txt" \
    --language "$l" --epochs "$LANG_EPOCHS" --lr "$LANG_LR" "${TRAIN[@]}" --id "lang/$l" --version 1.0.0 --out "$WORK/lang-$l" --push "$MODHUB_HUB"
  stage "lang-$l-sft" modhub train --method lt-sft --task mlm --base "$WORK/base" --data "$S/$l.txt" --dev "$S/$l.dev.txt" \
    --language "$l" --epochs "$LANG_EPOCHS" --lr "$SFT_LANG_LR" "${TRAIN[@]}" --id "sft/lang-$l" --version 1.0.0 --out "$WORK/sft-lang-$l" --push "$MODHUB_HUB"
done

# 5. task modules on English: Pfeiffer adapter stacked on the English adapter (MAD-X), LT-SFT task diff (trained
# on the bare base: the trainer ignores --stack-on for sparse diffs, issue 17), full fine-tuning as the baseline
TASK=(--task classification --base "$WORK/base" --data "$S/en.train.jsonl" --dev "$S/en.dev.jsonl" --epochs "$TASK_EPOCHS" "${TRAIN[@]}" --version 1.0.0)
stage task-adapter modhub train --method seq_bn "${TASK[@]}" --stack-on "$WORK/lang-en" --lr "$ADAPTER_LR" --id task/topic --out "$WORK/task-topic" --push "$MODHUB_HUB"
stage task-sft modhub train --method lt-sft "${TASK[@]}" --lr "$SFT_LR" --id sft/topic --out "$WORK/sft-topic" --push "$MODHUB_HUB"
stage task-full modhub train --method full "${TASK[@]}" --lr "$FULL_LR" --id full/topic --out "$WORK/full-topic" --push "$MODHUB_HUB"

# 6. zero-shot evaluation per language (en: in-language reference)
: > "$WORK/results.jsonl"
for l in $LANGS; do
  stage "eval-$l" ts examples/multilingual/eval.ts --data "$S/$l.test.jsonl" --train "$S/en.train.jsonl" --lang "$l" \
    --max-length "$MAXLEN" --tag "$BUDGET" --out "$WORK/results.jsonl" \
    --system 'adapter alone=task/topic' \
    --system "adapter on target lang={\"stack\":[\"lang/$l\",\"task/topic\"]}" \
    --system 'adapter on lang/en={"stack":["lang/en","task/topic"]}' \
    --system 'task SFT alone=sft/topic' \
    --system "SFT target lang + task={\"sum\":[\"sft/lang-$l\",\"sft/topic\"]}" \
    --system 'full fine-tune=full/topic'
done
ts examples/multilingual/report.ts "$WORK" | tee "$WORK/report.md"
exit
}
