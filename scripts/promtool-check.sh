#!/usr/bin/env bash
# Static checks of Triage's Prometheus and Grafana files with promtool (no
# server needed):
#   1. promtool check config  monitoring/prometheus/prometheus.yml (and the rule files it names)
#   2. promtool check rules   monitoring/prometheus/rules/*.yml
#   3. promtool test rules    monitoring/prometheus/tests/*.yml (every alert firing and silent)
#   4. promtool check rules   on every Grafana panel's PromQL (variables replaced by
#      example values; written by monitoring/grafana/cmd/gen-dashboards -promql-rules)
# Runs every check, then exits non-zero if any failed. Installs Debian's
# prometheus package (promtool) when missing, via scripts/prometheus-local.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { printf 'promtool-check: %s\n' "$*" >&2; }

command -v promtool >/dev/null 2>&1 || scripts/prometheus-local install >/dev/null

prom=monitoring/prometheus
failed=()
run() { # run NAME CMD...: runs a check, records its failure
	local name="$1"
	shift
	printf '\n== %s\n' "$name"
	if ! "$@"; then
		failed+=("$name")
	fi
}

run "check config" promtool check config "$prom/prometheus.yml"
run "check rules" promtool check rules "$prom"/rules/*.yml
# `test rules` resolves rule_files relative to the test file.
run "test rules" promtool test rules "$prom"/tests/*.yml

panels="$(mktemp "${TMPDIR:-/tmp}/triage-grafana-panels.XXXXXX.yml")"
trap 'rm -f "$panels"' EXIT
check_panels() {
	go run ./monitoring/grafana/cmd/gen-dashboards -promql-rules "$panels" &&
		promtool check rules "$panels"
}
run "grafana panel PromQL" check_panels

echo
if ((${#failed[@]} > 0)); then
	log "FAILED: ${failed[*]}"
	exit 1
fi
log "all checks passed ($(promtool --version 2>&1 | head -n1))"
