#!/usr/bin/env bash
# Checks the Airflow DAG deploy/airflow/dags/triage_retrain.py against a live `triage dev`:
#   1) installs apache-airflow (AIRFLOW_VERSION, pinned) into .cache/airflow-venv once (a few minutes; the
#      constraints files on GitHub are not reachable from every machine, so pip resolves the pinned package);
#   2) builds bin/triage, starts `triage dev` on free loopback ports with a temporary --data-dir and a small
#      stratified copy of the training data (--datasets; quick bootstrap), waits for readiness;
#   3) sends human labels (POST /v1/feedback: rows of the full data outside the small copy, some held out for
#      evaluation with "eval": true) so each model has labels its champion has not trained on;
#   4) AIRFLOW_HOME in a temp dir, `airflow db migrate`, `airflow dags reserialize`, the DAG imports with no
#      errors (`airflow dags list-import-errors` is empty) and is listed;
#   5) `airflow dags test triage_retrain`: every task succeeds, the report names each model's gate decision
#      (promoted or rejected, both valid), and the registry agrees;
#   6) again for support with a 1-epoch challenger and the strictest gate (epsilon 0, delta 0, min support 1):
#      the run still succeeds and reports "rejected", the champions do not move;
#   7) with models=["nosuch"]: the run fails, saying why.
# Stops triage dev at the end. Exit status non-zero on any failure.
#
# Env: AIRFLOW_VERSION (default 3.3.2), AIRFLOW_VENV (default .cache/airflow-venv), TRIAGE_DATA_DIR (default
#      ../shared/data), SAMPLE_PER_CLASS (rows per class in the small copy, default 30), READY_TIMEOUT (180 s),
#      TRIAGE_BIN (default bin/triage).
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { printf 'check-airflow: %s\n' "$*" >&2; }
die() { printf 'check-airflow: FAIL: %s\n' "$*" >&2; exit 1; }

AIRFLOW_VERSION="${AIRFLOW_VERSION:-3.3.2}"
venv="${AIRFLOW_VENV:-$repo_root/.cache/airflow-venv}"
pip_cache="${PIP_CACHE_DIR:-$repo_root/.cache/pip}"
DATA_DIR="${TRIAGE_DATA_DIR:-../shared/data}"
SAMPLE_PER_CLASS="${SAMPLE_PER_CLASS:-30}"
READY_TIMEOUT="${READY_TIMEOUT:-180}"
TRIAGE_BIN="${TRIAGE_BIN:-bin/triage}"
t_start=$SECONDS

# --- 1) Airflow venv ---------------------------------------------------------------------
airflow_ok() {
	[[ -x "$venv/bin/airflow" ]] &&
		"$venv/bin/python" -c 'import sys; from importlib.metadata import version; sys.exit(version("apache-airflow") != sys.argv[1])' "$AIRFLOW_VERSION" 2>/dev/null
}
if ! airflow_ok; then
	mkdir -p "$(dirname "$venv")"
	exec 9>"$venv.lock"
	if command -v flock >/dev/null 2>&1; then flock 9; fi
	if ! airflow_ok; then
		log "installing apache-airflow==$AIRFLOW_VERSION into $venv (once; ~3-4 min with an empty pip cache)"
		t0=$SECONDS
		rm -rf "$venv"
		python3 -m venv "$venv" || die "python3 -m venv failed"
		if ! PIP_CACHE_DIR="$pip_cache" "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
			"apache-airflow==$AIRFLOW_VERSION" >&2; then
			rm -rf "$venv"
			die "pip install apache-airflow==$AIRFLOW_VERSION failed"
		fi
		airflow_ok || die "apache-airflow $AIRFLOW_VERSION not importable after the install"
		echo "airflow venv: apache-airflow==$AIRFLOW_VERSION installed in $((SECONDS - t0)) s ($(du -sh "$venv" | cut -f1))"
	fi
	exec 9>&-
fi
if [[ "${1:-}" == "--install-only" ]]; then
	exit 0 # scripts/test.sh installs ahead, in the background, while the Go tests run
fi

# --- 2) triage dev ------------------------------------------------------------------------------
log "building $TRIAGE_BIN"
go build -o "$TRIAGE_BIN" ./cmd/triage
# shellcheck source=lib/triage-env.sh
source scripts/lib/triage-env.sh # ONNXRUNTIME_LIB, free_port
TRIAGE_BIN_ABS="$(cd "$(dirname "$TRIAGE_BIN")" && pwd)/$(basename "$TRIAGE_BIN")"

for f in banking77/train.csv movie-reviews/train.csv; do
	[[ -f "$DATA_DIR/$f" ]] || die "no $DATA_DIR/$f: set TRIAGE_DATA_DIR (or run make data)"
done

work="$(mktemp -d "${TMPDIR:-/tmp}/check-airflow.XXXXXX")"
state="$work/state"
datasets="$work/datasets"
dev_log="$work/dev.log"
dev_pid=""
cleanup() {
	local rc=$?
	if [[ -n "$dev_pid" ]] && kill -0 "$dev_pid" 2>/dev/null; then
		kill -TERM "$dev_pid" 2>/dev/null || true
		for _ in $(seq 1 75); do kill -0 "$dev_pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$dev_pid" 2>/dev/null || true
		wait "$dev_pid" 2>/dev/null || true
	fi
	if [[ $rc -ne 0 && -f "$dev_log" ]]; then
		log "last 20 lines of triage dev's log:"
		tail -n 20 "$dev_log" >&2 || true
	fi
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A small stratified copy of each base file (seeded) and, from the rest, labels to send as feedback.
mkdir -p "$datasets/banking77" "$datasets/movie-reviews" "$state"
python3 - "$DATA_DIR" "$datasets" "$SAMPLE_PER_CLASS" "$work/feedback.jsonl" <<'PY'
import csv, json, random, sys
src, dst, per, fb = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
out = []
for model, path, col in (("support", "banking77/train.csv", "category"), ("reviews", "movie-reviews/train.csv", "label")):
    rows = list(csv.DictReader(open(f"{src}/{path}", newline="", encoding="utf-8")))
    random.Random(42).shuffle(rows)
    by = {}
    for r in rows:
        by.setdefault(r[col], []).append(r)
    keep, rest = [], []
    for label, rs in sorted(by.items()):
        k = per if model == "support" else per * 10
        keep += rs[:k]
        rest += rs[k:]
    with open(f"{dst}/{path}", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text", col])
        w.writeheader()
        w.writerows(keep)
    random.Random(7).shuffle(rest)
    # Labels the champions never saw: for support 10 per intent (the first retrain carves its evaluation set
    # from them, stratified, 10%: fewer than 10 per class leaves it empty) plus 1 per intent held out with
    # "eval": true; for reviews 100 plus 40 held out.
    seen = {}
    for r in rest:
        c = seen.get(r[col], 0)
        if model == "support" and c >= 11:
            continue
        seen[r[col]] = c + 1
        i = len([o for o in out if o["model"] == model])
        held = c == 10 if model == "support" else i % 7 == 0
        out.append({"id": f"af-{model}-{i}", "text": r["text"], "label": r[col], "model": model, "eval": held})
        if model == "reviews" and i >= 139:
            break
with open(fb, "w", encoding="utf-8") as f:
    for o in out:
        f.write(json.dumps(o) + "\n")
PY

kafka_port="$(free_port)" http_port="$(free_port)" metrics_port="$(free_port)"
base="http://127.0.0.1:$http_port"
t0=$SECONDS
"$TRIAGE_BIN" dev --data-dir "$state" --datasets "$datasets" \
	--kafka-addr "127.0.0.1:$kafka_port" --http-addr "127.0.0.1:$http_port" \
	--metrics-addr "127.0.0.1:$metrics_port" --rate 100000 --burst 100000 >"$dev_log" 2>&1 &
dev_pid=$!
log "started triage dev (pid $dev_pid): kafka 127.0.0.1:$kafka_port, gateway $base, state $state"
deadline=$((SECONDS + READY_TIMEOUT))
until grep -q "triage dev ready" "$dev_log" 2>/dev/null; do
	kill -0 "$dev_pid" 2>/dev/null || die "triage dev exited before it was ready"
	((SECONDS < deadline)) || die "triage dev not ready within ${READY_TIMEOUT}s"
	sleep 0.5
done
echo "triage dev: ready in $((SECONDS - t0)) s (default models bootstrapped on the small copy)"
KEY="$(tr -d '[:space:]' <"$state/dev-api-key")"

# --- 3) human labels -----------------------------------------------------------------------------
sent=0
while IFS= read -r line; do
	curl -sf -o /dev/null -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
		-d "$line" "$base/v1/feedback" || die "POST /v1/feedback failed for $line"
	sent=$((sent + 1))
done <"$work/feedback.jsonl"
held="$(grep -c '"eval": true' "$work/feedback.jsonl" || true)"
echo "feedback: $sent labels sent through POST /v1/feedback ($held of them with \"eval\": true)"

# --- 4) Airflow home, import check ---------------------------------------------------------------
export AIRFLOW_HOME="$work/airflow"
export AIRFLOW__CORE__DAGS_FOLDER="$repo_root/deploy/airflow/dags"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__UNIT_TEST_MODE=False
export AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING
export NO_COLOR=1
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in deploy/airflow/dags
export PYTHONWARNINGS=ignore::UserWarning # graphviz is not installed: dags list warns about it
mkdir -p "$AIRFLOW_HOME"
af() { "$venv/bin/airflow" "$@"; }
t0=$SECONDS
af db migrate >"$work/db-migrate.log" 2>&1 || { tail -n 30 "$work/db-migrate.log" >&2; die "airflow db migrate failed"; }
echo "airflow db migrate: $((SECONDS - t0)) s"
# -o json output, without any log or warning lines around it.
json_out() { python3 -c 'import json,sys
t = sys.stdin.read()
for i, l in enumerate(t.splitlines()):
    if l.startswith(("[", "{")):
        print(json.dumps(json.loads("\n".join(t.splitlines()[i:])))); break
else:
    sys.exit("no JSON in: " + t[-500:])'; }
# Parse the DAG folder into the metadata DB (what the dag processor does), then read its import errors.
af dags reserialize >"$work/reserialize.log" 2>&1 || { tail -n 30 "$work/reserialize.log" >&2; die "airflow dags reserialize failed"; }
errs="$(af dags list-import-errors -o json 2>"$work/import.err" | json_out)" || { cat "$work/import.err" >&2; die "airflow dags list-import-errors failed"; }
[[ "$errs" == "[]" ]] || { printf '%s\n' "$errs" >&2; die "the DAG folder has import errors"; }
af dags list -o json 2>/dev/null | json_out | python3 -c 'import json,sys; sys.exit(0 if any(d["dag_id"]=="triage_retrain" for d in json.load(sys.stdin)) else 1)' ||
	die "triage_retrain is not among airflow dags list"
echo "airflow $AIRFLOW_VERSION: deploy/airflow/dags imports with no errors; triage_retrain listed"

# --- 5)–7) airflow dags test ----------------------------------------------------------------------
export TRIAGE_BIN="$TRIAGE_BIN_ABS" ONNXRUNTIME_LIB
export TRIAGE_REGISTRY="$state/registry" TRIAGE_BROKERS="127.0.0.1:$kafka_port" TRIAGE_DATA_DIR="$datasets"
export TRIAGE_SNAPSHOTS="$state/snapshots" TRIAGE_WORK_DIR="$state/work" TRIAGE_RUNS_DIR="$state/runs"

champions() { # model=version,... of the champions
	"$TRIAGE_BIN" models list --registry "$TRIAGE_REGISTRY" --json --log-level warn |
		python3 -c 'import json,sys; print(",".join(sorted(m["model"] + "=" + m["aliases"].get("champion", "-") for m in json.load(sys.stdin))))'
}
# dags_test NAME [airflow dags test args...]: runs the DAG once; prints the run state.
dags_test() {
	local name="$1"
	shift
	local t0=$SECONDS rc=0
	af dags test triage_retrain "$@" >"$work/$name.log" 2>&1 || rc=$?
	# `airflow dags test` exits 1 and prints "DagRun failed" when the run fails.
	if [[ $rc -eq 0 ]] && ! grep -q "DagRun failed" "$work/$name.log"; then run_state=success; else run_state=failed; fi
	dags_rc=$rc dags_s=$((SECONDS - t0))
}
report_lines() { grep -oE 'triage_retrain: [a-z]+: .*' "$work/$1.log" | sed 's/\\n.*//' | sort -u; }

before="$(champions)"
dags_test run1
if [[ $dags_rc -ne 0 || "$run_state" != success ]]; then
	tail -n 60 "$work/run1.log" >&2
	die "airflow dags test triage_retrain: exit $dags_rc, run state ${run_state:-unknown}"
fi
lines="$(report_lines run1)"
for m in support reviews; do
	grep -qE "^triage_retrain: $m: (promoted|rejected) v[0-9]+" <<<"$lines" || { tail -n 60 "$work/run1.log" >&2; die "no gate decision reported for $m"; }
done
after="$(champions)"
promoted="$(grep -oE '^triage_retrain: [a-z]+: promoted v[0-9]+' <<<"$lines" | awk '{sub(":","",$2); print $2"="$4}' | sort | paste -sd, - || true)"
for pv in ${promoted//,/ }; do
	[[ ",$after," == *",$pv,"* ]] || die "the report says $pv was promoted, the registry's champions are $after"
done
echo "dags test (weekly run): success in $dags_s s; champions $before -> $after"
sed 's/^/  /' <<<"$lines"

# A gate no 1-epoch challenger can pass: no macro-F1 loss and no recall drop in any class allowed.
TRIAGE_RETRAIN_MAX_EPOCHS=1 TRIAGE_GATE_EPSILON=0 TRIAGE_GATE_DELTA=0 TRIAGE_GATE_MIN_SUPPORT=1 \
	dags_test run2 -c '{"models": ["support"]}'
if [[ $dags_rc -ne 0 || "$run_state" != success ]]; then
	tail -n 60 "$work/run2.log" >&2
	die "a rejected challenger failed the run (exit $dags_rc, state ${run_state:-unknown}); it is a valid outcome"
fi
lines="$(report_lines run2)"
grep -qE '^triage_retrain: support: rejected v[0-9]+' <<<"$lines" || { tail -n 60 "$work/run2.log" >&2; die "the rejection was not reported"; }
[[ "$(champions)" == "$after" ]] || die "champions moved on a rejected run: $after -> $(champions)"
echo "dags test (1-epoch challenger, strictest gate): success in $dags_s s; champions unchanged"
sed 's/^/  /' <<<"$lines"

dags_test run3 -c '{"models": ["nosuch"]}'
[[ "$run_state" == failed ]] || { tail -n 40 "$work/run3.log" >&2; die "a run for an unknown model did not fail (state ${run_state:-unknown})"; }
grep -q "cannot retrain \['nosuch'\]" "$work/run3.log" || die "the failed run does not say why"
echo "dags test (models=[\"nosuch\"]): failed as it should (exit $dags_rc): cannot retrain ['nosuch']"

echo "check-airflow: PASS ($((SECONDS - t_start)) s)"
