#!/usr/bin/env bash
# Encoder benchmark (docs/benchmarks.md): Triage vs the Python a user would
# write (HF tokenizers + onnxruntime), same ONNX file, texts, batches and
# threads, in one run; plus int8 vs fp32. The Python side gets the same ONNX
# Runtime version as Triage's shared library (1.24.1) in a private venv.
# Extra arguments go to `triage bench encoder`.
set -euo pipefail
cd "$(dirname "$0")/.."

data_dir="${TRIAGE_DATA_DIR:-../shared/data}"
log() { printf 'bench-encoder: %s\n' "$*" >&2; }
# shellcheck source=lib/ort-python.sh
source scripts/lib/ort-python.sh
ONNXRUNTIME_LIB="$(bash scripts/fetch-onnxruntime.sh | tail -n1)"
export ONNXRUNTIME_LIB
go build -o bin/triage ./cmd/triage
enc="$(bash scripts/build-encoder.sh | tail -n1)"
exec bin/triage bench encoder --encoder "${enc}" --python "${ORT_PYTHON}" \
	--data "${data_dir}/banking77/train.csv,${data_dir}/movie-reviews/train.csv" "$@"
