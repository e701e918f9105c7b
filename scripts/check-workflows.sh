#!/usr/bin/env bash
# Lints every GitHub Actions workflow (.github/workflows/*.yml) with actionlint,
# built from the Go module proxy the first time and cached in .cache/bin.
set -euo pipefail
cd "$(dirname "$0")/.."

ACTIONLINT_VERSION=v1.7.12
BIN="$PWD/.cache/bin"
mkdir -p "$BIN"

# go_tool NAME PACKAGE VERSION: builds PACKAGE@VERSION into .cache/bin once.
go_tool() {
	local name=$1 pkg=$2 version=$3 stamp="$BIN/.$1.version"
	if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg@$version" ]; then
		return
	fi
	echo "building $name $version from the Go module proxy into .cache/bin" >&2
	local start=$SECONDS
	GOBIN="$BIN" go install "$pkg@$version"
	echo "$pkg@$version" >"$stamp"
	echo "built $name in $((SECONDS - start)) s" >&2
}

go_tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$ACTIONLINT_VERSION"

shopt -s nullglob
files=(.github/workflows/*.yml .github/workflows/*.yaml)
if [ ${#files[@]} -eq 0 ]; then
	echo "no workflow files under .github/workflows" >&2
	exit 1
fi
echo "actionlint $("$BIN/actionlint" -version | head -n1) on ${files[*]}" >&2
"$BIN/actionlint" -no-color "${files[@]}"
echo "workflows OK (${#files[@]} files)" >&2
