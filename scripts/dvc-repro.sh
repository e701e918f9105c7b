#!/usr/bin/env bash
# Runs the DVC pipeline (dvc.yaml, params.yaml) in place and checks that it is
# reproducible: the first `dvc repro` runs whatever is out of date (everything on
# a fresh clone), the second must be a no-op. Prints timings and `dvc metrics show`.
#
# Installs PyPI dvc into .cache/dvc-venv once; builds bin/triage if missing.
# DVC is initialised in place without git (`dvc init --no-scm`): .dvc/, dvc.lock
# and dvc-out/ are git-ignored, so nothing of DVC's state gets committed.
# Extra arguments go to both `dvc repro` calls (e.g. a stage: train@reviews).
set -euo pipefail

DVC_VERSION="3.67.1"

log() { printf 'dvc-repro: %s\n' "$*" >&2; }
die() { printf 'dvc-repro: ERROR: %s\n' "$*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"
export DVC_NO_ANALYTICS=1
# DVC's state/index databases next to its other files, not in /var/tmp/dvc.
export DVC_SITE_CACHE_DIR="${repo_root}/.dvc/site-cache"

# --- DVC in a venv under .cache/ (reused while its version matches) ---------
venv="${repo_root}/.cache/dvc-venv"
dvc="${venv}/bin/dvc"
install_dvc() {
	[[ -x "$dvc" && "$(cat "${venv}/.complete" 2>/dev/null)" == "$DVC_VERSION" ]] && return 0
	log "installing dvc==${DVC_VERSION} into ${venv} (first run only; a few minutes)"
	rm -rf "$venv"
	python3 -m venv "$venv"
	"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check \
		--cache-dir "${repo_root}/.cache/pip" "dvc==${DVC_VERSION}" >&2 || die "pip install dvc==${DVC_VERSION} failed"
	printf '%s' "$DVC_VERSION" >"${venv}/.complete"
}
mkdir -p .cache
if command -v flock >/dev/null 2>&1; then
	exec 9>"${repo_root}/.cache/dvc-venv.lock"
	flock 9
	install_dvc
	flock -u 9
else
	install_dvc
fi
log "$("$dvc" --version | sed 's/^/dvc /')"

# --- what the stages call ------------------------------------------------------
if [[ ! -x bin/triage ]]; then
	log "building bin/triage"
	go build -o bin/triage ./cmd/triage
fi
if [[ -z "${ONNXRUNTIME_LIB:-}" ]]; then
	ONNXRUNTIME_LIB="$(bash scripts/fetch-onnxruntime.sh | tail -n1)"
	export ONNXRUNTIME_LIB
fi

# The data folder is params.yaml's data_dir (DVC cannot read it from the
# environment); a TRIAGE_DATA_DIR naming another folder would be silently
# ignored, so it is an error instead.
data_dir="$(sed -n 's/^data_dir:[[:space:]]*\([^#[:space:]]*\).*/\1/p' params.yaml)"
[[ -n "$data_dir" ]] || die "params.yaml has no data_dir"
[[ -d "$data_dir" ]] || die "data_dir ${data_dir} (params.yaml) is not a folder; point it at the folder holding movie-reviews/"
if [[ -n "${TRIAGE_DATA_DIR:-}" && "$(cd "$TRIAGE_DATA_DIR" 2>/dev/null && pwd -P)" != "$(cd "$data_dir" && pwd -P)" ]]; then
	die "TRIAGE_DATA_DIR=${TRIAGE_DATA_DIR} differs from data_dir ${data_dir} in params.yaml; set data_dir there"
fi

# --- DVC repository in place, without git --------------------------------------
if [[ ! -f .dvc/config ]]; then
	log "dvc init --no-scm"
	"$dvc" init --no-scm --quiet
	"$dvc" config core.analytics false
	"$dvc" config core.check_update false
fi

run_repro() { # dvc repro arguments; output to $out (and stderr), wall time to $secs
	local start end
	start="$(date +%s.%N)"
	"$dvc" repro "$@" 2>&1 | tee "$out" >&2 || { rc=$?; die "dvc repro failed (exit ${rc})"; }
	end="$(date +%s.%N)"
	secs="$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')"
}
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

log "dvc repro (1/2)"
run_repro "$@"
first="$secs"
ran="$(grep -c "^Running stage" "$out" || true)"

log "dvc repro (2/2): must be a no-op"
run_repro "$@"
second="$secs"
if grep -q "^Running stage" "$out" || ! grep -q "Data and pipelines are up to date" "$out"; then
	die "the second dvc repro was not a no-op: the pipeline is not reproducible (see its output above)"
fi

log "metrics"
"$dvc" metrics show
log "timings: first repro ${first}s (${ran} stage(s) ran), second repro ${second}s (no-op)"
