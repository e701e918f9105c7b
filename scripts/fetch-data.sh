#!/usr/bin/env bash
# Puts the training data a fresh machine lacks into TRIAGE_DATA_DIR (default ../shared/data, from the repository
# root): banking77/train.csv (text,category), banking77/categories.json and movie-reviews/train.csv
# (text,label). `make data` runs it. Sources and SHA-256 pins: scripts/data-sources.txt.
#
#   - A file already there is kept (checked against its pin; a different one is reported, never overwritten).
#   - A missing file is downloaded into a staging folder inside TRIAGE_DATA_DIR, verified, then renamed into
#     place. A download or conversion whose SHA-256 is not the pinned one is refused and deleted: exit 1 with
#     both digests, nothing left behind.
#   - Default sources are the public ones (PolyAI's BANKING77 CSVs; Pang & Lee's sentence polarity archive,
#     verified, then converted to text,label: all 10,662 sentences — the public corpus, not the training
#     portion the shared copy holds, whose row choice is deliberately not recorded here because it would name
#     the held-out sentences). With
#     TRIAGE_DATA_BASE_URL=URL (an internal mirror of the data folder: URL/banking77/train.csv, ...) each file
#     comes from there instead, verified against the same pins.
#
# Env: TRIAGE_DATA_DIR, TRIAGE_DATA_BASE_URL, TRIAGE_DATA_SOURCES (default scripts/data-sources.txt).
# Output: the data folder's path as the last stdout line; progress on stderr. Needs curl (or wget), python3.
set -euo pipefail

log() { printf 'fetch-data: %s\n' "$*" >&2; }
die() { printf 'fetch-data: ERROR: %s\n' "$*" >&2; exit 1; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

DATA_DIR="${TRIAGE_DATA_DIR:-../shared/data}"
BASE_URL="${TRIAGE_DATA_BASE_URL:-}"
SOURCES="${TRIAGE_DATA_SOURCES:-scripts/data-sources.txt}"

[[ -f "$SOURCES" ]] || die "no sources file $SOURCES"

sha256_of() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$1" | awk '{print $1}'
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 "$1" | awk '{print $1}'
	else
		die "need sha256sum or shasum to verify downloads"
	fi
}

download() { # download URL FILE
	if command -v curl >/dev/null 2>&1; then
		curl -fsSL --retry 2 --connect-timeout 20 --max-time 600 -o "$2" "$1"
	elif command -v wget >/dev/null 2>&1; then
		wget -q -T 20 -O "$2" "$1"
	else
		die "need curl or wget to download $1"
	fi
}

# verify FILE SHA WHAT: deletes FILE and exits 1 unless its SHA-256 is SHA.
verify() {
	local got
	got="$(sha256_of "$1")"
	if [[ "$got" != "$2" ]]; then
		rm -f "$1"
		die "SHA-256 mismatch for $3:
    expected $2
    got      $got
  refused and deleted; nothing was written to $DATA_DIR for it. If the source changed on purpose, check it
  and update the pin in $SOURCES."
	fi
}

# --- read the sources --------------------------------------------------------------
declare -a files=()         # "PATH SHA SOURCE"
declare -A raw_sha raw_url  # ARCHIVE -> SHA / URL
while read -r kind name sha src rest; do
	[[ -z "${kind:-}" || "$kind" == \#* ]] && continue
	[[ -n "${src:-}" && -z "${rest:-}" && "$sha" =~ ^[0-9a-f]{64}$ ]] || die "$SOURCES: bad line: $kind $name $sha $src $rest"
	case "$kind" in
	file) files+=("$name $sha $src") ;;
	raw) raw_sha[$name]="$sha" raw_url[$name]="$src" ;;
	*) die "$SOURCES: unknown kind $kind (want file or raw)" ;;
	esac
done <"$SOURCES"
((${#files[@]} > 0)) || die "$SOURCES lists no files"

# --- what is missing -------------------------------------------------------------------
declare -a missing=()
for entry in "${files[@]}"; do
	read -r path sha _ <<<"$entry"
	if [[ -f "$DATA_DIR/$path" ]]; then
		have="$(sha256_of "$DATA_DIR/$path")"
		if [[ "$have" == "$sha" ]]; then
			log "present: $DATA_DIR/$path (sha256 verified)"
		else
			log "present: $DATA_DIR/$path, but not the pinned copy (sha256 $have, pinned $sha); left as is"
		fi
	else
		missing+=("$entry")
	fi
done
if ((${#missing[@]} == 0)); then
	log "nothing to fetch: $DATA_DIR has every file"
	printf '%s\n' "$DATA_DIR"
	exit 0
fi

mkdir -p "$DATA_DIR" || die "cannot create $DATA_DIR"
# Staging inside the data folder: the final mv is a rename on one filesystem,
# so a reader never sees a half-written file.
stage="$(mktemp -d "$DATA_DIR/.fetch-data.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

if [[ -n "$BASE_URL" ]]; then
	log "source: mirror $BASE_URL (TRIAGE_DATA_BASE_URL)"
else
	log "source: the public sources in $SOURCES"
fi

# fetch_raw ARCHIVE: downloads and verifies a raw archive once; prints its path.
fetch_raw() {
	local name="$1" out="$stage/raw-$1"
	[[ -n "${raw_url[$name]:-}" ]] || die "$SOURCES: no raw entry for $name"
	if [[ ! -f "$out" ]]; then
		log "downloading ${raw_url[$name]}"
		download "${raw_url[$name]}" "$out" || { rm -f "$out"; die "download of ${raw_url[$name]} failed"; }
		verify "$out" "${raw_sha[$name]}" "${raw_url[$name]}"
	fi
	printf '%s\n' "$out"
}

# convert_mr ARCHIVE OUT: Pang & Lee's rt-polarity.pos/.neg (one cp1252 sentence a line) to the project's
# text,label CSV (every sentence, negatives then positives, as in the archive).
convert_mr() {
	python3 - "$1" "$2" <<'PY'
import csv, sys, tarfile

archive, out = sys.argv[1:3]
rows, seen = [], set()
with tarfile.open(archive, "r:*") as tar:
    members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
    for m in members:
        if m.name.endswith("rt-polarity.neg"):
            label = "negative"
        elif m.name.endswith("rt-polarity.pos"):
            label = "positive"
        else:
            continue
        seen.add(label)
        for raw in tar.extractfile(m).read().splitlines():
            try:
                text = raw.decode("cp1252")
            except UnicodeDecodeError:
                text = raw.decode("latin-1")
            if text.strip():
                rows.append((text.strip(), label))
if seen != {"positive", "negative"}:
    sys.exit(f"{archive}: no rt-polarity.pos and rt-polarity.neg inside (found {sorted(seen)})")
with open(out, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)  # the shared copy's dialect: minimal quoting, CRLF
    w.writerow(["text", "label"])
    w.writerows(rows)
print(f"converted {len(rows)} sentences", file=sys.stderr)
PY
}

for entry in "${missing[@]}"; do
	read -r path sha src <<<"$entry"
	tmp="$stage/${path//\//_}"
	if [[ -n "$BASE_URL" ]]; then
		url="${BASE_URL%/}/$path"
		log "downloading $url"
		download "$url" "$tmp" || { rm -f "$tmp"; die "download of $url failed"; }
		verify "$tmp" "$sha" "$url"
	elif [[ "$src" == mr:* ]]; then
		archive="$(fetch_raw "${src#mr:}")"
		log "converting $(basename "$archive") into $path"
		# The archive was verified against its pin; the conversion is
		# deterministic, and yields the whole corpus, not the shared copy
		# (whose pin holds for mirror downloads only).
		convert_mr "$archive" "$tmp" || { rm -f "$tmp"; die "conversion of ${src#mr:} into $path failed"; }
	else
		log "downloading $src"
		download "$src" "$tmp" || { rm -f "$tmp"; die "download of $src failed"; }
		verify "$tmp" "$sha" "$src"
	fi
	mkdir -p "$(dirname "$DATA_DIR/$path")"
	mv -f "$tmp" "$DATA_DIR/$path"
	log "installed $DATA_DIR/$path (sha256 verified)"
done
log "done: $DATA_DIR"
printf '%s\n' "$DATA_DIR"
