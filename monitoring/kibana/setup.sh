#!/usr/bin/env bash
# Imports Triage's Kibana saved objects — index patterns triage-drift-*,
# triage-predictions-*, triage-logs-*, the drift and logs dashboards with their
# visualizations and saved searches — through Kibana's saved-objects API
# (POST /api/saved_objects/_import?overwrite=true), e.g. as a compose setup job.
# Idempotent: objects keep fixed ids and are overwritten.
#
# Usage: monitoring/kibana/setup.sh [KIBANA_URL]
#   KIBANA_URL       default http://127.0.0.1:5601
#   KIBANA_USERNAME, KIBANA_PASSWORD   basic auth, when security is on
#   KIBANA_SPACE     import into this space (default: the default space)
#   KIBANA_WAIT      seconds to wait for Kibana to answer (default 300)
#
# The files are checked against the index templates by
# `go test ./monitoring/kibana/` (every field they reference is mapped).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
url="${1:-${KIBANA_URL:-http://127.0.0.1:5601}}"
url="${url%/}"
wait_s="${KIBANA_WAIT:-300}"
base="$url"
if [[ -n "${KIBANA_SPACE:-}" ]]; then
	base="${url}/s/${KIBANA_SPACE}"
fi

log() { printf 'kibana-setup: %s\n' "$*" >&2; }
die() { printf 'kibana-setup: ERROR: %s\n' "$*" >&2; exit 1; }

command -v curl >/dev/null 2>&1 || die "curl not found"
auth=()
if [[ -n "${KIBANA_USERNAME:-}" ]]; then
	auth=(-u "${KIBANA_USERNAME}:${KIBANA_PASSWORD:-}")
fi

# Kibana answers /api/status with 503 while it starts (and migrates).
log "waiting up to ${wait_s}s for ${url}"
deadline=$((SECONDS + wait_s))
until curl -fsS -o /dev/null "${auth[@]+"${auth[@]}"}" "${url}/api/status"; do
	((SECONDS < deadline)) || die "Kibana at ${url} did not answer /api/status within ${wait_s}s"
	sleep 3
done

# One import for all files, so references between them resolve together;
# index patterns first.
bundle="$(mktemp "${TMPDIR:-/tmp}/triage-kibana.XXXXXX.ndjson")"
trap 'rm -f "$bundle"' EXIT
for f in index-patterns.ndjson drift-dashboard.ndjson logs-dashboard.ndjson; do
	[[ -f "${here}/${f}" ]] || die "missing ${here}/${f}"
	cat "${here}/${f}" >>"$bundle"
done
for f in "${here}"/*.ndjson; do
	case "$(basename "$f")" in
	index-patterns.ndjson | drift-dashboard.ndjson | logs-dashboard.ndjson) ;;
	*) cat "$f" >>"$bundle" ;;
	esac
done

log "importing $(grep -c . "$bundle") saved objects into ${base}"
response="$(curl -sS "${auth[@]+"${auth[@]}"}" -X POST "${base}/api/saved_objects/_import?overwrite=true" \
	-H 'kbn-xsrf: triage' --form "file=@${bundle};type=application/ndjson" -w '\n%{http_code}')"
code="${response##*$'\n'}"
body="${response%$'\n'*}"
if [[ "$code" != 200 ]] || ! grep -q '"success":true' <<<"$body"; then
	die "import failed (HTTP ${code}): ${body}"
fi
log "imported: ${body}"
