#!/usr/bin/env bash
# The README walk-through, end to end: a tiny base pretrained with MLM on the example corpus, MAD-X language
# adapters for English and German, a topic adapter trained stacked on English, all published to a running
# modhub server, then composed per request. Runs in about 40 s on 2 cores. Needs `npm install` first.
#   bash examples/walkthrough.sh            (work files in ./.walkthrough, server on port 8099)
set -euo pipefail
cd "$(dirname "$0")/.."
npm run --silent build
modhub() { node dist/server/cli.js "$@"; }
PORT=${PORT:-8099}
export MODHUB_HUB=http://127.0.0.1:$PORT
rm -rf .walkthrough && mkdir -p .walkthrough

# 1. a base: tiny random BERT with a vocabulary from the corpus, then MLM pretraining (full training, --save-base)
modhub base tiny --out .walkthrough/random --layers 2 --hidden 64 --heads 4 --corpus examples/corpus.txt --seed 0
modhub train --method full --task mlm --base .walkthrough/random --data examples/corpus.txt --epochs 10 --lr 2e-3 \
  --out .walkthrough/pretrain --save-base .walkthrough/base 2>> .walkthrough/train.log | tail -n 2

# 2. serve it: hub (SQLite + blob files in .walkthrough/hub) and inference on one port
node dist/server/cli.js serve --base .walkthrough/base --data .walkthrough/hub --port "$PORT" > .walkthrough/serve.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
export MODHUB_TOKEN=$(modhub token create --scope admin --data .walkthrough/hub | head -n 1)
until curl -sf "$MODHUB_HUB/healthz" > /dev/null; do sleep 0.2; done

# 3. train and publish: language adapters (MAD-X: seq_bn_inv, MLM) and a topic adapter stacked on English
modhub train --method seq_bn_inv --task mlm --base .walkthrough/base --data examples/en.txt --id lang/en --version 1.0.0 \
  --language en --lr 1e-3 --epochs 2 --out .walkthrough/lang-en --push "$MODHUB_HUB" 2>> .walkthrough/train.log | tail -n 1
modhub train --method seq_bn_inv --task mlm --base .walkthrough/base --data examples/de.txt --id lang/de --version 1.0.0 \
  --language de --lr 1e-3 --epochs 2 --out .walkthrough/lang-de --push "$MODHUB_HUB" 2>> .walkthrough/train.log | tail -n 1
modhub train --method seq_bn --task classification --base .walkthrough/base --data examples/topic/train.jsonl \
  --dev examples/topic/dev.jsonl --stack-on .walkthrough/lang-en --id task/topic --version 1.0.0 --lr 1e-2 --epochs 5 \
  --out .walkthrough/topic --push "$MODHUB_HUB" 2>> .walkthrough/train.log | grep -E '^(trained|saved|dev before|published)'

# 4. compose per request
modhub ls
modhub infer --compose '{"stack": ["lang/en", "task/topic"]}' "The striker scored in the final match." "Parliament passed a tax reform."
modhub infer --compose '{"stack": ["lang/de", "task/topic"]}' "Der Stürmer gewann das Finale."
curl -s "$MODHUB_HUB/v1/infer" -H 'content-type: application/json' -d '{
  "inputs": [{"text": "The startup released a faster processor."}],
  "composition": {"parallel": [{"stack": ["lang/en", "task/topic"]}, {"stack": ["lang/de", "task/topic"]}]}}'
echo
