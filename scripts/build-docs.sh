#!/usr/bin/env bash
# Builds the documentation site (mkdocs.yml) with MkDocs Material:
#
#   1. installs pinned mkdocs + mkdocs-material into .cache/docs-venv (first
#      run only; reused while the pins are unchanged);
#   2. builds the triage binary into .cache/docs/triage and generates the
#      reference pages into docs/reference/ (git-ignored there): REST from the
#      gateway's OpenAPI document, topics and schemas, configuration from
#      `triage flags` (go run ./docs/gen);
#   3. runs `mkdocs build --strict` into .cache/site: any warning — a broken
#      link or anchor, a page missing from the nav — fails the build.
#
# Usage: bash scripts/build-docs.sh [--serve]   (--serve: mkdocs serve instead
# of the build, on 127.0.0.1:8000; rerun the script to regenerate pages)
set -euo pipefail

log() { printf 'build-docs: %s\n' "$*" >&2; }
die() { printf 'build-docs: ERROR: %s\n' "$*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

serve=false
case "${1:-}" in
"") ;;
--serve) serve=true ;;
--install-only) ;;
*) die "unknown argument ${1} (use --serve, --install-only or nothing)" ;;
esac

# Every package the site needs, pinned (pip's resolution of the three direct
# pins on Python 3.11), so a fresh cache builds the same site.
requirements="mkdocs==1.6.1
mkdocs-material==9.8.1
pymdown-extensions==13.1
babel==2.19.0
backrefs==8.3.1
certifi==2026.10.19.post1
charset-normalizer==3.5.3
click==8.5.1
colorama==0.4.6
ghp-import==2.1.0
idna==3.20
Jinja2==3.1.6
Markdown==3.11.3
MarkupSafe==3.0.4
mergedeep==1.3.4
mkdocs-get-deps==0.2.2
mkdocs-material-extensions==1.3.1
packaging==26.4
paginate==0.5.7
pathspec==1.1.1
platformdirs==4.14.8
Pygments==2.21.0
python-dateutil==4.0.0
PyYAML==6.0.4
pyyaml_env_tag==1.1
requests==2.34.2
tzdata==2026.6
urllib3==2.8.0
watchdog==7.1.0"

venv="${repo_root}/.cache/docs-venv"
stamp="$(printf '%s' "$requirements" | sha256sum | cut -c1-16)"
install_venv() {
	[[ -x "${venv}/bin/mkdocs" && "$(cat "${venv}/.complete" 2>/dev/null)" == "$stamp" ]] && return 0
	command -v python3 >/dev/null || die "python3 is needed for MkDocs"
	log "installing mkdocs + mkdocs-material into ${venv} (first run only)"
	rm -rf "$venv"
	python3 -m venv "$venv"
	printf '%s\n' "$requirements" >"${venv}/requirements.txt"
	"${venv}/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
		--cache-dir "${repo_root}/.cache/pip" -r "${venv}/requirements.txt" >&2 ||
		die "pip install of the pinned MkDocs packages failed"
	"${venv}/bin/python" -m pip check >&2 || die "the pinned MkDocs packages do not agree (pip check)"
	printf '%s' "$stamp" >"${venv}/.complete"
}
mkdir -p .cache
start=$(date +%s)
if command -v flock >/dev/null 2>&1; then
	exec 9>"${repo_root}/.cache/docs-venv.lock"
	flock 9
	install_venv
	flock -u 9
else
	install_venv
fi
t_venv=$(date +%s)
if [[ "${1:-}" == "--install-only" ]]; then
	exit 0 # scripts/test.sh installs ahead, in the background, while the Go tests run
fi

# --- generated pages ------------------------------------------------------------
GO="${GO:-go}"
mkdir -p .cache/docs
"$GO" build -o .cache/docs/triage ./cmd/triage || die "go build ./cmd/triage failed"
"$GO" run ./docs/gen -out docs/reference -triage .cache/docs/triage || die "generating docs/reference failed"
t_gen=$(date +%s)

# --- site -----------------------------------------------------------------------
# Material 9.7+ prints an end-of-life banner on every run (stderr, not a build warning).
export NO_MKDOCS_2_WARNING=1
if $serve; then
	exec "${venv}/bin/mkdocs" serve --strict --dev-addr 127.0.0.1:8000
fi
"${venv}/bin/mkdocs" build --strict --clean --site-dir .cache/site
end=$(date +%s)
log "site in .cache/site ($(find .cache/site -name '*.html' | wc -l) pages): venv $((t_venv - start)) s, pages $((t_gen - t_venv)) s, mkdocs $((end - t_gen)) s, total $((end - start)) s"
