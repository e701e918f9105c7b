#!/usr/bin/env bash
# End-to-end check of the REST gateway as `triage dev` serves it:
#   0) drift traffic: shuffled Banking77 queries, then out-of-domain movie
#      reviews, into triage.support-queries; the monitor (windows of
#      MONITOR_WINDOW predictions) must report the in-domain windows and then
#      drift on the out-of-domain ones, so GET /v1/drift is populated for a) and b);
#   a) schemathesis fuzzes every operation of /openapi.json (except POST /v1/train,
#      which would queue real training jobs) and fails on any 5xx or any response
#      that does not match the documented schema;
#   b) headless Chromium (playwright-core driving Debian's /usr/bin/chromium) loads
#      the page at /, types the dev API key and a text, clicks Classify and expects
#      the label card_arrival; screenshot in artifacts/gateway-page.png; then opens
#      the Drift view and waits for the support stream's windows, its charts and
#      a drift alert; screenshot in artifacts/drift-page.png;
#   c) hot swap: a training job with activate reaches /v1/predict and Kafka
#      predictions within 5 s, and `triage models rollback` brings the previous
#      version back on both.
# It starts `triage dev` on free loopback ports and a temporary data dir (models
# copied from data/models when present, else trained on first start) and stops it
# with SIGTERM at the end. Exit status is non-zero on any failure.
#
# Env: SCHEMATHESIS_MAX_EXAMPLES (default 30), SCHEMATHESIS_CHECKS (default
#      not_a_server_error,response_schema_conformance), EXPECT_LABEL (default
#      card_arrival), READY_TIMEOUT (default 180 s), MONITOR_WINDOW (predictions
#      per drift window, default 50), DRIFT_TIMEOUT (default 90 s per wait),
#      TRIAGE_DATA_DIR (training data: banking77/, movie-reviews/; default
#      ../shared/data, as triage dev's --datasets), TRIAGE_BIN (default bin/triage).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { printf 'gateway-e2e: %s\n' "$*" >&2; }
die() { printf 'gateway-e2e: FAIL: %s\n' "$*" >&2; exit 1; }

TRIAGE_BIN="${TRIAGE_BIN:-bin/triage}"
READY_TIMEOUT="${READY_TIMEOUT:-180}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-30}"
ST_CHECKS="${SCHEMATHESIS_CHECKS:-not_a_server_error,response_schema_conformance}"
EXPECT_LABEL="${EXPECT_LABEL:-card_arrival}"
MONITOR_WINDOW="${MONITOR_WINDOW:-50}"
DRIFT_TIMEOUT="${DRIFT_TIMEOUT:-90}"
DATA_DIR="${TRIAGE_DATA_DIR:-../shared/data}"
ARTIFACTS="$repo_root/artifacts"
NODE_DIR="$repo_root/.cache/e2e-node" # git-ignored; holds node_modules for scripts/e2e

# shellcheck source=lib/triage-env.sh
source scripts/lib/triage-env.sh

work="$(mktemp -d "${TMPDIR:-/tmp}/triage-e2e.XXXXXX")"
data_dir="$work/data"
dev_log="$work/dev.log"
dev_pid=""
dev_killed=0
status=1

stop_dev() {
	if [[ -n "$dev_pid" ]] && kill -0 "$dev_pid" 2>/dev/null; then
		kill -TERM "$dev_pid" 2>/dev/null || true
		local t0=$SECONDS
		for _ in $(seq 1 75); do
			kill -0 "$dev_pid" 2>/dev/null || break
			sleep 0.2
		done
		if kill -0 "$dev_pid" 2>/dev/null; then
			log "triage dev did not stop within 15 s of SIGTERM; killing it"
			kill -KILL "$dev_pid" 2>/dev/null || true
			dev_killed=1
		fi
		wait "$dev_pid" 2>/dev/null || true
		[[ $dev_killed -ne 0 ]] || log "triage dev (every role and the broker) stopped $((SECONDS - t0)) s after SIGTERM"
	fi
	dev_pid=""
}

cleanup() {
	local rc=$?
	if [[ $status -ne 0 && $rc -eq 0 ]]; then rc=1; fi
	stop_dev
	if [[ $rc -ne 0 && -f "$dev_log" ]]; then
		log "last 40 lines of triage dev's log ($dev_log):"
		tail -n 40 "$dev_log" >&2 || true
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- start triage dev ---------------------------------------------------------
mkdir -p "$data_dir"
if [[ -d data/models/support && -d data/models/reviews ]]; then
	mkdir -p "$data_dir/models"
	cp -r data/models/support data/models/reviews "$data_dir/models/"
	log "copied data/models/{support,reviews} into the temp data dir"
else
	log "no data/models: triage dev will train the default models first (~25 s+)"
fi

kafka_port="$(free_port)"
http_port="$(free_port)"
metrics_port="$(free_port)"
base="http://127.0.0.1:$http_port"

# A high default rate limit: the dev key has no own limit, and the fuzzer and
# page would otherwise be answered 429 at the default 50 rps.
"$TRIAGE_BIN" dev --data-dir "$data_dir" \
	--kafka-addr "127.0.0.1:$kafka_port" --http-addr "127.0.0.1:$http_port" \
	--metrics-addr "127.0.0.1:$metrics_port" --rate 100000 --burst 100000 \
	--monitor-window-count "$MONITOR_WINDOW" \
	>"$dev_log" 2>&1 &
dev_pid=$!
log "started triage dev (pid $dev_pid), gateway $base, log $dev_log"

deadline=$((SECONDS + READY_TIMEOUT))
until grep -q "triage dev ready" "$dev_log" 2>/dev/null; do
	kill -0 "$dev_pid" 2>/dev/null || die "triage dev exited before it was ready"
	((SECONDS < deadline)) || die "triage dev not ready within ${READY_TIMEOUT}s"
	sleep 0.5
done
log "ready after ${SECONDS}s"
[[ -s "$data_dir/dev-api-key" ]] || die "no dev API key at $data_dir/dev-api-key"
KEY="$(tr -d '[:space:]' <"$data_dir/dev-api-key")"

# --- 0) drift traffic --------------------------------------------------------------
# Whole windows only: a partial window would close by time (after a minute) and,
# being under the monitor's minimum count, raise no alarm.
support_csv="$DATA_DIR/banking77/train.csv"
reviews_csv="$DATA_DIR/movie-reviews/train.csv"
[[ -f "$support_csv" && -f "$reviews_csv" ]] || die "no $support_csv or $reviews_csv: set TRIAGE_DATA_DIR to the folder holding banking77/ and movie-reviews/"
in_domain=$((3 * MONITOR_WINDOW)) out_domain=$((2 * MONITOR_WINDOW))
# banking77/train.csv is sorted by label: a seeded shuffle gives windows whose
# label mix matches the validation split's.
python3 - "$support_csv" "$work/support-sample.csv" "$in_domain" <<'PY'
import csv, random, sys
rows = [r["text"] for r in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8"))]
random.Random(42).shuffle(rows)
with open(sys.argv[2], "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(["text"])
    w.writerows([t] for t in rows[: int(sys.argv[3])])
PY
drift_state() { # prints "windows drifting last_drift has_reference" of support on triage.support-queries
	curl -sf -H "Authorization: Bearer $KEY" "$base/v1/drift?model=support" | python3 -c 'import json,sys
s = [x for x in json.load(sys.stdin)["streams"] if x["topic"] == "triage.support-queries"]
w = s[0]["windows"] if s else []
print(len(w), sum(x["drift"] for x in w), str(bool(w and w[-1]["drift"])).lower(), str(bool(s and s[0].get("reference"))).lower())'
}
wait_windows() { # wait_windows N: until support has N windows
	local deadline=$((SECONDS + DRIFT_TIMEOUT)) st=""
	while :; do
		st="$(drift_state || true)"
		[[ -n "$st" && "${st%% *}" -ge "$1" ]] && break
		((SECONDS < deadline)) || die "GET /v1/drift: support has ${st%% *} windows after ${DRIFT_TIMEOUT}s, want $1 (state: ${st:-none})"
		sleep 0.5
	done
	echo "$st"
}
produce() { # produce FILE COUNT
	"$TRIAGE_BIN" produce --brokers "127.0.0.1:$kafka_port" --topic triage.support-queries \
		--file "$1" --count "$2" --progress=false >/dev/null || die "triage produce $1 failed"
}
produce "$work/support-sample.csv" "$in_domain"
st="$(wait_windows 3)"
read -r n_in drift_in _ has_ref <<<"$st"
[[ "$has_ref" == true ]] || die "support's version has no drift reference (a bundle from before monitoring in data/models?): windows raise no alarms"
produce "$reviews_csv" "$out_domain"
st="$(wait_windows $((n_in + 2)))"
read -r n_all drift_all last_drift _ <<<"$st"
[[ "$last_drift" == true ]] || die "the monitor reported no drift on out-of-domain text (windows $n_all, drifting $drift_all)"
echo "drift traffic: $in_domain Banking77 queries then $out_domain movie reviews into triage.support-queries: $n_all windows of $MONITOR_WINDOW, $drift_all drifting ($drift_in of the $n_in in-domain), latest drifting"

# --- a) schemathesis -----------------------------------------------------------
if ! python3 -c 'import schemathesis' 2>/dev/null; then
	log "installing schemathesis"
	python3 -m pip install --quiet schemathesis
fi
if command -v schemathesis >/dev/null 2>&1; then
	st=(schemathesis)
else
	st=(python3 -m schemathesis.cli)
fi
st_version="$("${st[@]}" --version 2>/dev/null | awk '{print $NF}')"
mkdir -p "$ARTIFACTS"
st_out="$ARTIFACTS/schemathesis.txt"
log "schemathesis $st_version: max $MAX_EXAMPLES examples per operation"
st_rc=0
# schemathesis 4.x flags (3.x used --hypothesis-max-examples and -E/--exclude).
"${st[@]}" run "$base/openapi.json" \
	-H "Authorization: Bearer $KEY" \
	--checks "$ST_CHECKS" \
	--exclude-operation-id train \
	--max-examples "$MAX_EXAMPLES" \
	--seed 42 \
	--workers 2 \
	--request-timeout 20 \
	--generation-database none \
	--no-color >"$st_out" 2>&1 || st_rc=$?
# Summary: "N/M operations, K test cases generated, K passed, 2 warnings in 6.4s".
st_ops="$(awk '/^  Selected:/ {sel=$2} /^  Tested:/ {t=$2} END {if (t != "") printf "%s tested (selected %s)", t, sel}' "$st_out")"
st_cases="$(awk 'f && NF {sub(/^[ \t]+/, ""); print; exit} /^Test cases:/ {f=1}' "$st_out")"
st_tail="$(grep -E '^=+ .* in [0-9.]+s =+$' "$st_out" | tail -n 1 | sed 's/^=* *//; s/ *=*$//' || true)"
summary="operations ${st_ops:-?}; test cases: ${st_cases:-?}; ${st_tail:-?}"
if [[ $st_rc -ne 0 ]]; then
	cat "$st_out" >&2
	die "schemathesis failed (exit $st_rc): ${summary:-see output above}"
fi
echo "schemathesis: OK ($st_version, checks $ST_CHECKS, max $MAX_EXAMPLES examples/op, POST /v1/train excluded): $summary (full output: artifacts/schemathesis.txt)"

# --- b) Chromium page test -------------------------------------------------------
if [[ ! -x /usr/bin/chromium ]]; then
	log "installing Debian chromium"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
mkdir -p "$NODE_DIR"
if ! cmp -s scripts/e2e/package.json "$NODE_DIR/package.json" || [[ ! -d "$NODE_DIR/node_modules/playwright-core" ]]; then
	log "installing playwright-core into $NODE_DIR"
	cp scripts/e2e/package.json "$NODE_DIR/package.json"
	(cd "$NODE_DIR" && npm install --silent --no-audit --no-fund --loglevel=error >/dev/null)
fi
mkdir -p "$ARTIFACTS"
E2E_NODE_DIR="$NODE_DIR" GATEWAY_URL="$base" TRIAGE_KEY="$KEY" \
	SCREENSHOT="$ARTIFACTS/gateway-page.png" EXPECT_LABEL="$EXPECT_LABEL" \
	DRIFT_SCREENSHOT="$ARTIFACTS/drift-page.png" DRIFT_MODEL=support DRIFT_TOPIC=triage.support-queries \
	node scripts/e2e/page-test.mjs || die "page test failed"

# --- c) hot swap under triage dev ------------------------------------------------
# POST /v1/train with activate: the trainer registers and promotes a new version;
# /v1/predict and new Kafka predictions must both report it within 5 s. Then
# `triage models rollback` brings the previous version back on both.
predict_version() {
	curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
		-d '{"model":"support","text":"my card has not arrived yet"}' "$base/v1/predict" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["predictions"][0]["model"]["version"])'
}
kafka_version() { # produce one input, read its prediction back
	local id="swap-$1-$RANDOM"
	"$TRIAGE_BIN" produce --brokers "127.0.0.1:$kafka_port" --topic triage.support-queries \
		--text "my card has not arrived yet" --id "$id" --progress=false >/dev/null 2>&1 || return 1
	"$TRIAGE_BIN" tail --brokers "127.0.0.1:$kafka_port" --topic triage.predictions --timeout 1s 2>/dev/null |
		python3 -c 'import json,sys
for l in sys.stdin:
    p = json.loads(l)
    if p.get("id") == sys.argv[1]: print(p["model"]["version"])' "$id"
}
wait_both() { # wait_both VERSION WHAT: both paths report VERSION within 5 s of now
	local want="$1" start=$SECONDS rest="" kafka=""
	while ((SECONDS - start <= 5)); do
		[[ "$rest" == "$want" ]] || rest="$(predict_version || true)"
		[[ "$kafka" == "$want" ]] || kafka="$(kafka_version "$want" || true)"
		[[ "$rest" == "$want" && "$kafka" == "$want" ]] && break
		sleep 0.2
	done
	[[ "$rest" == "$want" && "$kafka" == "$want" ]] || die "$2: after 5 s /v1/predict serves ${rest:-?} and Kafka ${kafka:-?}, want $want"
	echo "hot swap: $2: /v1/predict and Kafka predictions on $want within $((SECONDS - start)) s"
}
before="$(predict_version)"
job="$(curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
	-d '{"data_path":"banking77/train.csv","text_column":"text","label_column":"category","name":"support","activate":true,"max_epochs":2}' \
	"$base/v1/train" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')" || die "POST /v1/train failed"
deadline=$((SECONDS + 300))
while :; do
	job_json="$(curl -sf -H "Authorization: Bearer $KEY" "$base/v1/train/$job")" || die "GET /v1/train/$job failed"
	job_status="$(python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"], j.get("version",""), j.get("error",""))' <<<"$job_json")"
	case "$job_status" in
	succeeded*) break ;;
	failed*) die "training job failed: $job_status" ;;
	esac
	((SECONDS < deadline)) || die "training job not done within 300 s: $job_status"
	sleep 1
done
after="$(awk '{print $2}' <<<"$job_status")"
[[ -n "$after" && "$after" != "$before" ]] || die "training job registered version '$after' (serving before: $before)"
wait_both "$after" "POST /v1/train activate ($before -> $after)"
"$TRIAGE_BIN" models rollback support --registry "$data_dir/registry" --brokers "127.0.0.1:$kafka_port" \
	--reason "gateway-e2e rollback" --log-level warn >/dev/null || die "triage models rollback failed"
wait_both "$before" "triage models rollback ($after -> $before)"

# --- d) stop -----------------------------------------------------------------------
stop_dev
[[ $dev_killed -eq 0 ]] || die "triage dev had to be killed: it did not exit on SIGTERM"
if grep -q '"log.level":"error"' "$dev_log"; then
	log "note: triage dev logged errors:"
	grep '"log.level":"error"' "$dev_log" | tail -n 5 >&2
fi
status=0
echo "gateway-e2e: PASS"
