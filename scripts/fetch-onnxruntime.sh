#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library that package inference loads via
# onnxruntime_go. It comes from the onnxruntime-node npm package because npm is
# a registry we can always reach, and that package ships the plain C-API
# libonnxruntime.so.1 next to its node binding.
#
# Output: the cached library path as the last line on stdout; progress on stderr.
# Cache:  ${ORT_CACHE_DIR:-<repo>/.cache/onnxruntime}/<version>/libonnxruntime.so.1
set -euo pipefail

ORT_VERSION="1.24.1"
NPM_PACKAGE="onnxruntime-node@${ORT_VERSION}"
LIB_NAME="libonnxruntime.so.1"
# Path of the linux/x64 library inside the npm tarball (checked against 1.24.1).
TARBALL_MEMBER="package/bin/napi-v6/linux/x64/${LIB_NAME}"
# SHA-256 of TARBALL_MEMBER in onnxruntime-node-1.24.1.tgz. Pinned so a
# republished or tampered package cannot slip a different binary in.
LIB_SHA256="53ef1ac028dd1b05554b8da28d9159eb3876f99868193d2aaa6e67f0243c23d4"

log() { printf 'fetch-onnxruntime: %s\n' "$*" >&2; }
die() { printf 'fetch-onnxruntime: ERROR: %s\n' "$*" >&2; exit 1; }

os="$(uname -s)"
arch="$(uname -m)"
if [[ "$os" != "Linux" || ( "$arch" != "x86_64" && "$arch" != "amd64" ) ]]; then
	die "only linux/x64 is supported (this is ${os}/${arch}); install ONNX Runtime ${ORT_VERSION} yourself and set ONNXRUNTIME_LIB to its shared library"
fi

sha256_of() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | awk '{print $1}'
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | awk '{print $1}'
	else
		die "need sha256sum or shasum to verify the download"
	fi
}

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/.." && pwd)"
cache_base="${ORT_CACHE_DIR:-${repo_root}/.cache/onnxruntime}"
dest_dir="${cache_base}/${ORT_VERSION}"
dest="${dest_dir}/${LIB_NAME}"

# Fast path: already cached and intact.
if [[ -f "$dest" ]]; then
	have="$(sha256_of "$dest")"
	if [[ "$have" == "$LIB_SHA256" ]]; then
		log "cached: $dest"
		printf '%s\n' "$dest"
		exit 0
	fi
	log "cached file $dest has sha256 $have, expected $LIB_SHA256; fetching again"
fi

command -v npm >/dev/null 2>&1 || die "npm not found; it is needed to download ${NPM_PACKAGE}"
command -v tar >/dev/null 2>&1 || die "tar not found"

mkdir -p "$dest_dir"
work="$(mktemp -d "${TMPDIR:-/tmp}/fetch-onnxruntime.XXXXXX")"
partial=""
cleanup() {
	rm -rf "$work"
	if [[ -n "$partial" ]]; then rm -f "$partial"; fi
}
trap cleanup EXIT

log "downloading ${NPM_PACKAGE} (~85 MB) with npm pack"
(cd "$work" && npm pack --silent "$NPM_PACKAGE" >&2) || die "npm pack ${NPM_PACKAGE} failed"
shopt -s nullglob
tarballs=("$work"/*.tgz)
shopt -u nullglob
[[ ${#tarballs[@]} -eq 1 ]] || die "expected one tarball from npm pack in $work, found ${#tarballs[@]}"

# Extract next to the destination so the final mv is an atomic rename on one
# filesystem; concurrent runs never see a half-written library.
partial="$(mktemp "${dest_dir}/.${LIB_NAME}.partial.XXXXXX")"
log "extracting ${TARBALL_MEMBER}"
tar -xzOf "${tarballs[0]}" "$TARBALL_MEMBER" >"$partial" ||
	die "could not extract ${TARBALL_MEMBER} from $(basename "${tarballs[0]}"); the package layout may have changed"

got="$(sha256_of "$partial")"
if [[ "$got" != "$LIB_SHA256" ]]; then
	die "SHA-256 mismatch for ${TARBALL_MEMBER} from ${NPM_PACKAGE}:
    expected ${LIB_SHA256}
    got      ${got}
  refusing to install it. If the package was legitimately republished, verify it and update LIB_SHA256 in $0."
fi

chmod 0755 "$partial"
mv -f "$partial" "$dest"
partial=""
log "installed $dest (sha256 verified)"
printf '%s\n' "$dest"
