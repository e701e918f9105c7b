#!/usr/bin/env bash
# The main job on the embedded default: fetch ONNX Runtime, build triage,
# train the support-intent (Banking77) and review-sentiment (MR) models,
# score them on their held-out validation splits and classify a few texts.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${TRIAGE_DATA_DIR:-../shared/data}"
MODELS="${TRIAGE_MODELS_DIR:-data/models}"
for f in "$DATA_DIR/banking77/train.csv" "$DATA_DIR/movie-reviews/train.csv"; do
  [ -f "$f" ] || { echo "demo: $f not found; set TRIAGE_DATA_DIR to the folder holding banking77/ and movie-reviews/" >&2; exit 1; }
done

ONNXRUNTIME_LIB="$(bash scripts/fetch-onnxruntime.sh | tail -n1)"
export ONNXRUNTIME_LIB
go build -o bin/triage ./cmd/triage

echo "== train support (Banking77)" >&2
bin/triage train --data "$DATA_DIR/banking77/train.csv" --text-column text --label-column category --out "$MODELS/support"
echo "== train reviews (MR)" >&2
bin/triage train --data "$DATA_DIR/movie-reviews/train.csv" --text-column text --label-column label --out "$MODELS/reviews"

echo "== evaluate on the validation splits" >&2
bin/triage eval --model "$MODELS/support" --data "$DATA_DIR/banking77/train.csv" --text-column text --label-column category --split validation
bin/triage eval --model "$MODELS/reviews" --data "$DATA_DIR/movie-reviews/train.csv" --text-column text --label-column label --split validation

echo "== predict" >&2
bin/triage predict --model "$MODELS/support" --top-k 3 \
  "I am still waiting on my card, it's been two weeks" \
  "The refund from the shop hasn't shown up in my account" \
  "Which currencies can I exchange?"
bin/triage predict --model "$MODELS/reviews" --top-k 2 \
  "a gorgeous, moving film with terrific performances" \
  "a tedious mess that never finds its footing"
