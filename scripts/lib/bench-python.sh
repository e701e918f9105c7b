# Sourced by the benchmark scripts that measure Triage against what a Python
# user would build instead: FastAPI + uvicorn serving scikit-learn (TF-IDF +
# logistic regression) or the same pipeline as ONNX through onnxruntime, and a
# confluent-kafka consumer. One private venv with pinned versions, so the
# baseline is the same on every machine. Sets BENCH_PYTHON. Expects a log function.

BENCH_VENV="${BENCH_VENV:-.cache/bench-venv}"
if ! "${BENCH_VENV}/bin/python" -c 'import fastapi, uvicorn, sklearn, onnxruntime, skl2onnx, confluent_kafka, numpy, orjson' 2>/dev/null; then
	log "installing the Python baselines (FastAPI, uvicorn, scikit-learn, onnxruntime, skl2onnx, confluent-kafka) into ${BENCH_VENV}"
	python3 -m venv "${BENCH_VENV}"
	"${BENCH_VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
		'fastapi==0.115.12' 'uvicorn[standard]==0.34.2' 'scikit-learn==1.6.1' 'onnxruntime==1.24.1' \
		'skl2onnx==1.18.0' 'onnx==1.17.0' 'confluent-kafka==2.10.0' 'numpy<2.3' 'orjson==3.10.18'
fi
BENCH_PYTHON="${BENCH_VENV}/bin/python"
