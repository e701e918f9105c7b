#!/usr/bin/env bash
# Open-loop REST benchmark of POST /v1/predict (one Banking77 text per request,
# texts cycled) with vegeta (`triage bench rest`), at fixed offered rates:
#   triage                      `triage gateway`, support model, default settings
#                               (dynamic batching on, no added wait)
#   triage-no-batching          the same with --dynamic-batching=false
#   floor-healthz               the same gateway driven with GET /healthz, a
#                               constant handler: the latency floor that this
#                               driver, loopback HTTP and these cores set
#   fastapi-sklearn-wN          scripts/bench/rest_sklearn.py, uvicorn --workers N
#   fastapi-onnx-wN             scripts/bench/rest_onnx.py (skl2onnx + onnxruntime,
#                               1 intra-op thread per worker), --workers N
# Each server runs alone, started and stopped in turn. Per rate: REST_WARMUP of
# unmeasured load, then REST_DURATION measured. A rate is sustained when achieved
# throughput >= 95% of it, success >= 99.9% and p99 <= REST_MAX_P99; saturation is
# the highest sustained rate; a server stops after 2 unsustained rates in a row.
# The load generator runs on the same cores as the server (2 on the reference
# machine), so it takes CPU from it: figures are for driver + server together.
# Prints a markdown table (p50/p99/p99.9 per rate per server) and the ratios of
# Triage's saturation to each Python baseline's best worker count.
#
# Env: REST_RATES (comma-separated req/s), REST_DURATION (5s), REST_WARMUP (1s),
# REST_WORKERS ("1 2"), REST_MAX_P99 (100ms), REST_SERVERS (default
# "triage floor-healthz triage-no-batching sklearn onnx"), TRIAGE_BIN, REST_DATA, PROFILE_DIR (each
# Triage gateway writes a CPU profile PROFILE_DIR/<server>.pprof covering its run).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { printf 'bench-rest: %s\n' "$*" >&2; }
die() { printf 'bench-rest: FAIL: %s\n' "$*" >&2; exit 1; }

REST_RATES="${REST_RATES:-100,250,500,1000,2000,5000,10000,15000,20000,25000,30000}"
REST_DURATION="${REST_DURATION:-5s}"
REST_WARMUP="${REST_WARMUP:-1s}"
REST_WORKERS="${REST_WORKERS:-1 2}"
REST_MAX_P99="${REST_MAX_P99:-100ms}"
REST_SERVERS="${REST_SERVERS:-triage floor-healthz triage-no-batching sklearn onnx}"
REST_DATA="${REST_DATA:-../shared/data/banking77/train.csv}"
PROFILE_DIR="${PROFILE_DIR:-}"
TRIAGE_BIN="${TRIAGE_BIN:-.cache/bench/triage}"
READY_TIMEOUT="${READY_TIMEOUT:-120}"
[[ -f "$REST_DATA" ]] || die "no $REST_DATA (Banking77 text,category CSV; set REST_DATA)"

# shellcheck source=lib/bench-python.sh
source scripts/lib/bench-python.sh
log "building $TRIAGE_BIN"
go build -o "$TRIAGE_BIN" ./cmd/triage
# shellcheck source=lib/triage-env.sh
source scripts/lib/triage-env.sh
# One BLAS/OpenMP thread per Python worker: workers are the parallelism.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

mkdir -p .cache/bench
triage_model=.cache/bench/triage-support
if [[ ! -f "$triage_model/model.json" ]]; then
	log "training the Triage support model into $triage_model (cached)"
	"$TRIAGE_BIN" train --data "$REST_DATA" --label-column category --name support --seed 42 \
		--out "$triage_model" --log-level warn >/dev/null
fi
sk_model="$("$BENCH_PYTHON" scripts/bench/train_sklearn.py --data "$REST_DATA" --out .cache/bench/sklearn-banking77.pkl | tail -n1)"
onnx_model="$("$BENCH_PYTHON" scripts/bench/rest_onnx.py --prepare --data "$REST_DATA" --model .cache/bench/onnx-banking77.onnx | tail -n1)"

work="$(mktemp -d "${TMPDIR:-/tmp}/triage-bench-rest.XXXXXX")"
results="$work/results.jsonl"
rss_table="$work/rss.md"
: >"$rss_table"
srv_pid=""
srv_log=""
stop_server() {
	if [[ -n "$srv_pid" ]] && kill -0 "$srv_pid" 2>/dev/null; then
		kill -TERM "$srv_pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$srv_pid" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "$srv_pid" 2>/dev/null || true
		wait "$srv_pid" 2>/dev/null || true
	fi
	srv_pid=""
}
cleanup() {
	local rc=$?
	stop_server
	if [[ $rc -ne 0 && -n "$srv_log" && -f "$srv_log" ]]; then
		log "last 20 lines of $srv_log:"
		tail -n 20 "$srv_log" >&2 || true
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

keys_file="$work/api-keys.yaml"
TRIAGE_KEY="$("$TRIAGE_BIN" apikey add --file "$keys_file" --name bench --scopes predict \
	--rate 1000000 --burst 1000000 2>/dev/null | tr -d '[:space:]')"
[[ -n "$TRIAGE_KEY" ]] || die "apikey add printed no secret"

# run NAME PORT -- server command...: start it, wait for one good prediction, drive it, stop it.
run() {
	local name="$1" port="$2"
	shift 3
	srv_log="$work/$name.log"
	"$@" >"$srv_log" 2>&1 &
	srv_pid=$!
	local url="http://127.0.0.1:$port/v1/predict" deadline=$((SECONDS + READY_TIMEOUT))
	until curl -sf -o /dev/null -H "Authorization: Bearer $TRIAGE_KEY" -H 'Content-Type: application/json' \
		-d '{"text":"I am still waiting on my card"}' "$url"; do
		kill -0 "$srv_pid" 2>/dev/null || die "$name exited before it answered"
		((SECONDS < deadline)) || die "$name did not answer within ${READY_TIMEOUT}s"
		sleep 0.5
	done
	local drive=(--url "$url" --key "$TRIAGE_KEY" --data "$REST_DATA")
	if [[ -n "${drive_get:-}" ]]; then
		url="http://127.0.0.1:$port/healthz"
		drive=(--get --url "$url")
	fi
	log "$name ready; driving $url at $REST_RATES req/s"
	"$TRIAGE_BIN" bench rest "${drive[@]}" --name "$name" \
		--rates "$REST_RATES" --duration "$REST_DURATION" --warmup "$REST_WARMUP" --max-p99 "$REST_MAX_P99" \
		--json "$results" >&2
	printf '| %s | %s |\n' "$name" "$(tree_hwm_mb "$srv_pid")" >>"$rss_table"
	stop_server
}

# tree_hwm_mb prints the peak RSS (VmHWM) of a server and its children (uvicorn
# workers) in MB, summed: what the server as a whole held at its peak.
tree_hwm_mb() {
	local pids=("$1") kb=0 p
	mapfile -t -O 1 pids < <(pgrep -P "$1" || true)
	for p in "${pids[@]}"; do
		p_kb="$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)"
		kb=$((kb + ${p_kb:-0}))
	done
	printf '%d' $((kb / 1024))
}

# profile_flag prints --cpu-profile for a Triage server when PROFILE_DIR is set.
profile_flag() {
	[[ -n "$PROFILE_DIR" ]] || return 0
	mkdir -p "$PROFILE_DIR"
	printf -- '--cpu-profile=%s/%s.pprof' "$PROFILE_DIR" "$1"
}

# The gateway role alone: no broker, so no model updates or training jobs.
gateway_args=(gateway --model "support=$triage_model" --api-keys-file "$keys_file" --metrics-addr ""
	--updates-topic "" --train-requests-topic "" --registry "$work/registry" --log-level warn)

for server in $REST_SERVERS; do
	case "$server" in
	triage)
		p="$(free_port)"
		run triage "$p" -- "$TRIAGE_BIN" "${gateway_args[@]}" --http-addr "127.0.0.1:$p" $(profile_flag triage)
		;;
	floor-healthz)
		p="$(free_port)"
		drive_get=1 run floor-healthz "$p" -- "$TRIAGE_BIN" "${gateway_args[@]}" --http-addr "127.0.0.1:$p"
		;;
	triage-no-batching)
		p="$(free_port)"
		run triage-no-batching "$p" -- "$TRIAGE_BIN" "${gateway_args[@]}" --http-addr "127.0.0.1:$p" --dynamic-batching=false $(profile_flag triage-no-batching)
		;;
	sklearn | onnx)
		for w in $REST_WORKERS; do
			p="$(free_port)"
			if [[ "$server" == sklearn ]]; then
				run "fastapi-sklearn-w$w" "$p" -- "$BENCH_PYTHON" scripts/bench/rest_sklearn.py --model "$sk_model" --port "$p" --workers "$w"
			else
				run "fastapi-onnx-w$w" "$p" -- "$BENCH_PYTHON" scripts/bench/rest_onnx.py --model "$onnx_model" --port "$p" --workers "$w"
			fi
		done
		;;
	*) die "unknown server $server in REST_SERVERS" ;;
	esac
done

printf '\n'
printf 'Open loop (vegeta, triage bench rest), %s per rate after %s warm-up, %s CPUs shared by the load generator and the server, %s\n\n' \
	"$REST_DURATION" "$REST_WARMUP" "$(env -u OMP_NUM_THREADS nproc)" "$(date -u +%Y-%m-%dT%H:%MZ)"
"$BENCH_PYTHON" scripts/bench/rest_report.py "$results"
printf '\n| server | peak RSS MB (server + workers) |\n|---|---:|\n'
cat "$rss_table"
