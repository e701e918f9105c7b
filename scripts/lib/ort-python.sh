# Sourced by scripts that need Python with ONNX Runtime's own tooling: the
# int8 quantiser (build-encoder.sh) and the benchmark's Python baseline
# (bench-encoder.sh). One private venv, pinned to the ONNX Runtime version of
# Triage's shared library, so the int8 file is reproducible and the baseline
# runs the same runtime. Sets ORT_PYTHON. Expects a log function.

ORT_VENV="${ORT_VENV:-.cache/ort-venv}"
if ! "${ORT_VENV}/bin/python" -c 'import onnxruntime.quantization, onnx, tokenizers, numpy' 2>/dev/null; then
	log "installing onnxruntime==1.24.1, onnx, tokenizers into ${ORT_VENV}"
	python3 -m venv "${ORT_VENV}"
	"${ORT_VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
		'onnxruntime==1.24.1' 'onnx==1.23.2' 'tokenizers==0.23.3' numpy
fi
ORT_PYTHON="${ORT_VENV}/bin/python"
