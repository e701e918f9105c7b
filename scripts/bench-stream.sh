#!/usr/bin/env bash
# The streaming comparison in one go: Triage's consumer (passthrough,
# micro-batched linear model, batch size 1) against the Python baseline
# (confluent-kafka + scikit-learn, 1 and 2 processes), via `triage bench stream`.
#
# Sets up the Python venv (scripts/lib/bench-python.sh), resolves ONNX Runtime,
# builds bin/triage, trains the Triage model if missing (cached under
# .cache/bench/), starts a local Kafka (scripts/kafka-local) unless BROKERS is
# given, and prints the markdown tables. Extra arguments go to `triage bench stream`.
#
# Environment (defaults): MESSAGES (200000) REPEAT (3) LATENCY_MESSAGES (3000)
# PARTITIONS (3) DATA (../shared/data/banking77/train.csv) MODEL (trained into
# .cache/bench/triage-support) BROKERS (start a broker) KAFKA_DIR (temp dir)
# PROFILE_DIR (none: one CPU profile per Triage consumer process when set).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { printf 'bench-stream: %s\n' "$*" >&2; }
die() { printf 'bench-stream: FAIL: %s\n' "$*" >&2; exit 1; }

MESSAGES="${MESSAGES:-200000}"
REPEAT="${REPEAT:-3}"
LATENCY_MESSAGES="${LATENCY_MESSAGES:-3000}"
PARTITIONS="${PARTITIONS:-3}"
DATA="${DATA:-../shared/data/banking77/train.csv}"
MODEL="${MODEL:-}"
BROKERS="${BROKERS:-}"
PROFILE_DIR="${PROFILE_DIR:-}"
TRIAGE_BIN="${TRIAGE_BIN:-bin/triage}"

[[ -f "$DATA" ]] || die "no training data at $DATA (set DATA, or fetch it with scripts/fetch-data.sh)"

# shellcheck source=lib/bench-python.sh
source scripts/lib/bench-python.sh

if [[ -z "${ONNXRUNTIME_LIB:-}" ]]; then
	ONNXRUNTIME_LIB="$(bash scripts/fetch-onnxruntime.sh | tail -n1)"
	export ONNXRUNTIME_LIB
fi

log "building $TRIAGE_BIN"
go build -o "$TRIAGE_BIN" ./cmd/triage

if [[ -z "$MODEL" ]]; then
	MODEL=.cache/bench/triage-support
	if [[ ! -f "$MODEL/model.json" ]]; then
		log "training the Triage model on $DATA into $MODEL"
		mkdir -p .cache/bench
		rm -rf "$MODEL"
		"$TRIAGE_BIN" train --data "$DATA" --text-column text --label-column category --name support --seed 42 \
			--out "$MODEL" --log-level warn >/dev/null
	fi
fi

kafka_dir=""
cleanup() {
	local rc=$?
	if [[ -n "$kafka_dir" ]]; then
		scripts/kafka-local stop --dir "$kafka_dir" >/dev/null 2>&1 || true
		rm -rf "$kafka_dir"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -z "$BROKERS" ]]; then
	kafka_dir="${KAFKA_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/bench-stream-kafka.XXXXXX")}"
	log "starting Kafka in $kafka_dir"
	BROKERS="$(scripts/kafka-local start --dir "$kafka_dir" | tail -n1)"
fi

args=(--brokers "$BROKERS" --model "$MODEL" --data "$DATA" --messages "$MESSAGES" --repeat "$REPEAT"
	--latency-messages "$LATENCY_MESSAGES" --partitions "$PARTITIONS" --python "$BENCH_PYTHON" --ort-lib "$ONNXRUNTIME_LIB")
if [[ -n "$PROFILE_DIR" ]]; then
	args+=(--profile-dir "$PROFILE_DIR")
fi
log "running: $TRIAGE_BIN bench stream ${args[*]} $*"
"$TRIAGE_BIN" bench stream "${args[@]}" "$@"
