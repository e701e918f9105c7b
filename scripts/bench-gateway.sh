#!/usr/bin/env bash
# Loopback HTTP benchmark of the gateway as `triage dev` serves it, with wrk:
#   GET  /healthz                      constant handler, the baseline
#   POST /v1/predict (dynamic batching on)   one support-model text per request
#   POST /v1/predict (--dynamic-batching=false)
# Each run: wrk -t2 -c32 -d10s --latency (override with WRK_THREADS, WRK_CONNS,
# WRK_DURATION). Prints a markdown table: rps, p50/p99 latency, ratios vs /healthz.
# The bench key is made with `triage apikey add --rate 1000000 --burst 1000000`
# so the per-key rate limiter does not throttle. wrk is closed-loop (no wrk2 in
# Debian), so latency figures are at saturation, not at a fixed offered rate.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { printf 'bench-gateway: %s\n' "$*" >&2; }
die() { printf 'bench-gateway: FAIL: %s\n' "$*" >&2; exit 1; }

TRIAGE_BIN="${TRIAGE_BIN:-bin/triage}"
READY_TIMEOUT="${READY_TIMEOUT:-180}"
WRK_THREADS="${WRK_THREADS:-2}"
WRK_CONNS="${WRK_CONNS:-32}"
WRK_DURATION="${WRK_DURATION:-10s}"

if ! command -v wrk >/dev/null 2>&1; then
	log "installing Debian wrk"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
# shellcheck source=lib/triage-env.sh
source scripts/lib/triage-env.sh

work="$(mktemp -d "${TMPDIR:-/tmp}/triage-bench.XXXXXX")"
data_dir="$work/data"
keys_file="$work/api-keys.yaml"
dev_log=""
dev_pid=""

stop_dev() {
	if [[ -n "$dev_pid" ]] && kill -0 "$dev_pid" 2>/dev/null; then
		kill -TERM "$dev_pid" 2>/dev/null || true
		for _ in $(seq 1 150); do
			kill -0 "$dev_pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$dev_pid" 2>/dev/null; then
			log "triage dev did not stop within 30 s of SIGTERM; killing it"
			kill -KILL "$dev_pid" 2>/dev/null || true
		fi
		wait "$dev_pid" 2>/dev/null || true
	fi
	dev_pid=""
}
cleanup() {
	local rc=$?
	stop_dev
	if [[ $rc -ne 0 && -n "$dev_log" && -f "$dev_log" ]]; then
		log "last 30 lines of triage dev's log ($dev_log):"
		tail -n 30 "$dev_log" >&2 || true
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$data_dir"
if [[ -d data/models/support && -d data/models/reviews ]]; then
	mkdir -p "$data_dir/models"
	cp -r data/models/support data/models/reviews "$data_dir/models/"
else
	log "no data/models: triage dev will train the default models first"
fi
TRIAGE_KEY="$("$TRIAGE_BIN" apikey add --file "$keys_file" --name bench --scopes admin \
	--rate 1000000 --burst 1000000 2>/dev/null | tr -d '[:space:]')"
[[ -n "$TRIAGE_KEY" ]] || die "apikey add printed no secret"
export TRIAGE_KEY

base=""
# start_dev LABEL [extra flags...]
start_dev() {
	local label="$1"
	shift
	local kafka_port http_port metrics_port
	kafka_port="$(free_port)"
	http_port="$(free_port)"
	metrics_port="$(free_port)"
	base="http://127.0.0.1:$http_port"
	dev_log="$work/dev-$label.log"
	"$TRIAGE_BIN" dev --data-dir "$data_dir" --api-keys-file "$keys_file" \
		--kafka-addr "127.0.0.1:$kafka_port" --http-addr "127.0.0.1:$http_port" \
		--metrics-addr "127.0.0.1:$metrics_port" "$@" >"$dev_log" 2>&1 &
	dev_pid=$!
	local deadline=$((SECONDS + READY_TIMEOUT))
	until grep -q "triage dev ready" "$dev_log" 2>/dev/null; do
		kill -0 "$dev_pid" 2>/dev/null || die "triage dev ($label) exited before it was ready"
		((SECONDS < deadline)) || die "triage dev ($label) not ready within ${READY_TIMEOUT}s"
		sleep 0.5
	done
	# One request to check the key and warm the model up.
	local code
	code="$(curl -s -o "$work/warm.json" -w '%{http_code}' -H "Authorization: Bearer $TRIAGE_KEY" \
		-H 'Content-Type: application/json' -d '{"model":"support","text":"I am still waiting on my card"}' \
		"$base/v1/predict")"
	[[ "$code" == 200 ]] || die "warm-up POST /v1/predict answered $code: $(cat "$work/warm.json")"
	log "triage dev ($label) ready at $base"
}

# to_ms VALUE-WITH-UNIT (wrk prints us, ms, s)
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
		else { printf "nan" } }'
}

rows_name=() rows_rps=() rows_p50=() rows_p99=()
nrows=0
# bench NAME wrk-args...
bench() {
	local name="$1"
	shift
	local out="$work/wrk-$nrows.txt"
	log "wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION --latency $*  ($name)"
	wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DURATION" --latency "$@" >"$out" 2>&1 || {
		cat "$out" >&2
		die "wrk failed for $name"
	}
	if grep -q 'Non-2xx or 3xx responses' "$out"; then
		cat "$out" >&2
		die "$name: some responses were not 2xx"
	fi
	if grep -q 'Socket errors' "$out"; then
		log "$name: $(grep 'Socket errors' "$out")"
	fi
	local rps p50 p99
	rps="$(awk '/^Requests\/sec:/ {print $2}' "$out")"
	p50="$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")"
	p99="$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")"
	[[ -n "$rps" ]] || {
		cat "$out" >&2
		die "could not parse wrk output for $name"
	}
	rows_name+=("$name")
	rows_rps+=("$rps")
	rows_p50+=("$p50")
	rows_p99+=("$p99")
	nrows=$((nrows + 1))
}

start_dev batching
bench "GET /healthz (constant)" "$base/healthz"
bench "POST /v1/predict, dynamic batching on" -s scripts/wrk-predict.lua "$base/v1/predict"
stop_dev

start_dev nobatching --dynamic-batching=false
bench "POST /v1/predict, dynamic batching off" -s scripts/wrk-predict.lua "$base/v1/predict"
stop_dev

printf '\n'
printf 'wrk -t%s -c%s -d%s --latency, loopback, %s CPUs, %s\n\n' "$WRK_THREADS" "$WRK_CONNS" "$WRK_DURATION" "$(nproc)" "$(date -u +%Y-%m-%dT%H:%MZ)"
printf '| endpoint / mode | rps | p50 ms | p99 ms | rps vs /healthz | p50 vs /healthz | p99 vs /healthz |\n'
printf '|---|---:|---:|---:|---:|---:|---:|\n'
for i in "${!rows_name[@]}"; do
	awk -v n="${rows_name[$i]}" -v r="${rows_rps[$i]}" -v a="${rows_p50[$i]}" -v b="${rows_p99[$i]}" \
		-v r0="${rows_rps[0]}" -v a0="${rows_p50[0]}" -v b0="${rows_p99[0]}" 'BEGIN {
		printf "| %s | %.0f | %.3f | %.3f | %.3fx | %.1fx | %.1fx |\n", n, r, a, b, r / r0, a / a0, b / b0 }'
done
