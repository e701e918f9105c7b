#!/usr/bin/env bash
# Creates the one Python environment Triage runs: the fine-tuning step of
# `triage train --fine-tune` (PyTorch + Hugging Face transformers) and the
# int8 quantiser of the fine-tuned encoder (onnxruntime). Pinned versions,
# PyPI only (PyPI's Linux torch is the CUDA build: it also runs on CPU, and
# its gloo backend serves torchrun on CPU). ~3 GB; downloads are cached under
# .cache/pip. Prints the environment's python as the last stdout line.
# TRIAGE_FINETUNE_VENV overrides the folder (default .cache/finetune-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'finetune-env: %s\n' "$*" >&2; }

venv="$(realpath -m "${TRIAGE_FINETUNE_VENV:-.cache/finetune-venv}")"
pins=(torch==2.15.0 transformers==5.24.0 safetensors==0.8.0 'onnxruntime==1.24.1' 'onnx==1.23.2' numpy)
stamp="${venv}/.triage-pins"
if [[ -x "${venv}/bin/python" && -f "${stamp}" && "$(cat "${stamp}")" == "${pins[*]}" ]]; then
	log "cached: ${venv}"
	printf '%s\n' "${venv}/bin/python"
	exit 0
fi
log "installing ${pins[*]} into ${venv} (first run: ~3 GB, a few minutes)"
python3 -m venv "${venv}"
"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check --cache-dir .cache/pip "${pins[@]}" >&2
"${venv}/bin/python" -c 'import torch, transformers, safetensors, onnxruntime.quantization' >&2
printf '%s\n' "${pins[*]}" >"${stamp}"
printf '%s\n' "${venv}/bin/python"
