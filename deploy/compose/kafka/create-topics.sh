#!/usr/bin/env bash
# Creates Triage's Kafka topics before any role starts (the compose job
# `kafka-init`, run in the apache/kafka image). Idempotent (--if-not-exists),
# so every `docker compose up` may run it again.
#
# Partitions bound parallelism: input topics get 6 (consumer replicas <= 6),
# the predictions topic the same. The compacted topics keep each key's latest
# record: triage.feedback (key = record id: the latest label per id),
# triage.model-updates (key = model / model@alias: alias moves; one partition,
# as serving creates it, so every process reads the moves in one order) and
# triage.train-status (key = job id). The roles create missing topics
# themselves with broker defaults; creating them here fixes the partition
# counts and the compaction before the first record.
#
# Usage: create-topics.sh [BOOTSTRAP]   (default $KAFKA_BOOTSTRAP, kafka:9092)
set -euo pipefail

bootstrap="${1:-${KAFKA_BOOTSTRAP:-kafka:9092}}"
topics_sh="${KAFKA_HOME:-/opt/kafka}/bin/kafka-topics.sh"

# name partitions [config ...]
topics=(
	"triage.support-queries 6"
	"triage.reviews 6"
	"triage.predictions 6"
	"triage.dead-letters 3"
	"triage.review-queue 3"
	"triage.drift 1"
	"triage.train-requests 3"
	"triage.feedback 3 cleanup.policy=compact"
	"triage.model-updates 1 cleanup.policy=compact"
	"triage.train-status 3 cleanup.policy=compact"
)

for spec in "${topics[@]}"; do
	read -r name partitions configs <<<"${spec}"
	args=(--bootstrap-server "${bootstrap}" --create --if-not-exists --topic "${name}"
		--partitions "${partitions}" --replication-factor 1)
	for c in ${configs}; do
		args+=(--config "${c}")
	done
	"${topics_sh}" "${args[@]}"
	echo "kafka-init: ${name} (${partitions} partitions${configs:+, ${configs}})"
done
"${topics_sh}" --bootstrap-server "${bootstrap}" --describe --topic 'triage\..*' | grep -c '^Topic:' |
	xargs -I{} echo "kafka-init: {} triage topics present"
