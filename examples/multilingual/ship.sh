#!/usr/bin/env bash
# Copies the artefacts of a finished `recipe.sh full` run into demo/, the folder `modhub serve` serves by default:
# the F16 base, the language modules (MAD-X adapter lang/<l>, LT-SFT diff lang-sft/<l>) and the English topic
# modules of seed 0 (every method but full fine-tuning, whose 11 MB copy of the base only serves as a baseline),
# plus the run's report. The recipe's last stage runs it.
#   bash examples/multilingual/ship.sh [WORK]        (default .data/multilingual-run/full)
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-.data/multilingual-run/full}
[ -f "$WORK/base/model.safetensors" ] || { echo "$WORK/base has no model.safetensors: run recipe.sh full first" >&2; exit 1; }
OUT=demo
rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp/base" "$OUT.tmp/modules/lang" "$OUT.tmp/modules/lang-sft" "$OUT.tmp/modules/topic"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do cp "$WORK/base/$f" "$OUT.tmp/base/"; done
pkg() { mkdir -p "$2" && cp "$1/module.json" "$1/weights.safetensors" "$1/README.md" "$2/"; }
for l in en de fr it es; do
  pkg "$WORK/lang-$l" "$OUT.tmp/modules/lang/$l"
  pkg "$WORK/lang-sft-$l" "$OUT.tmp/modules/lang-sft/$l"
done
for m in pfeiffer houlsby lora ia3 bitfit diff-pruning lt-sft; do pkg "$WORK/topic/$m" "$OUT.tmp/modules/topic/$m"; done
cp "$WORK/report.md" "$OUT.tmp/RESULTS.md"
[ -f demo/README.md ] && cp demo/README.md "$OUT.tmp/README.md"
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
du -sh "$OUT" "$OUT/base" "$OUT/modules"/* >&2
