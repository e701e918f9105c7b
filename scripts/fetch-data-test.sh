#!/usr/bin/env bash
# Test of scripts/fetch-data.sh against a local HTTP server (python3 -m http.server on 127.0.0.1, a free port)
# serving copies of the shared data (SHARED_DATA, default ../shared/data) from a temp folder:
#   1) mirror (TRIAGE_DATA_BASE_URL): every file arrives in an empty TRIAGE_DATA_DIR, byte-identical; a second
#      run fetches nothing;
#   2) a mirror whose movie-reviews/train.csv has one byte changed: refused (exit 1, "SHA-256 mismatch"), no
#      file and no staging folder left, the good files installed;
#   3) public path: a stand-in rt-polaritydata.tar.gz (the shared sentences in cp1252, shuffled, plus 50 more)
#      is verified and converted into a movie-reviews/train.csv holding every sentence with its label;
#   4) the same with an archive that is not the pinned one: refused before conversion, nothing left.
# The data never enters the repository. Exit status non-zero on any failure.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

log() { printf 'fetch-data-test: %s\n' "$*" >&2; }
die() { printf 'fetch-data-test: FAIL: %s\n' "$*" >&2; exit 1; }

SHARED="${SHARED_DATA:-${TRIAGE_DATA_DIR:-../shared/data}}"
FILES=(banking77/train.csv banking77/categories.json movie-reviews/train.csv)
for f in "${FILES[@]}"; do [[ -f "$SHARED/$f" ]] || die "no $SHARED/$f (set SHARED_DATA)"; done

work="$(mktemp -d "${TMPDIR:-/tmp}/fetch-data-test.XXXXXX")"
srv_pid=""
cleanup() {
	if [[ -n "$srv_pid" ]]; then kill "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

# --- the served tree: good/, bad/ (one byte changed), raw/ -------------------------------------
www="$work/www"
for f in "${FILES[@]}"; do
	mkdir -p "$www/good/$(dirname "$f")" "$www/bad/$(dirname "$f")"
	cp "$SHARED/$f" "$www/good/$f"
	cp "$SHARED/$f" "$www/bad/$f"
done
python3 - "$www/bad/movie-reviews/train.csv" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[100] = ord("X") if b[100] != ord("X") else ord("Y")
open(p, "wb").write(bytes(b))
PY
mkdir -p "$www/raw"
# A stand-in for Pang & Lee's archive: every shared sentence back in its class file (cp1252, trailing space
# as upstream), shuffled, plus sentences the shared copy does not have (the public corpus is larger).
python3 - "$SHARED/movie-reviews/train.csv" "$www/raw" <<'PY'
import csv, io, random, sys, tarfile
rows = list(csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")))
by = {"pos": [], "neg": []}
for r in rows:
    by["pos" if r["label"] == "positive" else "neg"].append(r["text"])
rng = random.Random(7)
for cls in by:
    by[cls] += [f"held-out {cls} sentence {i} , not for training ." for i in range(25)]
    rng.shuffle(by[cls])
def write(path, corrupt=False):
    with tarfile.open(path, "w:gz") as tar:
        for cls, lines in by.items():
            data = "".join(t + " \n" for t in lines).encode("cp1252")
            if corrupt:
                data = data.replace(b"film", b"flim", 1)
            ti = tarfile.TarInfo(f"rt-polaritydata/rt-polarity.{cls}")
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
write(sys.argv[2] + "/rt-polaritydata.tar.gz")
write(sys.argv[2] + "/rt-polaritydata-corrupt.tar.gz", corrupt=True)
PY

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
python3 -m http.server --bind 127.0.0.1 --directory "$www" "$port" >"$work/http.log" 2>&1 &
srv_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 50); do
	curl -sf -o /dev/null "$base/good/banking77/categories.json" && break
	kill -0 "$srv_pid" 2>/dev/null || die "http.server did not start: $(cat "$work/http.log")"
	sleep 0.1
done
log "serving $www on $base"

sha() { sha256sum "$1" | awk '{print $1}'; }
same_as_shared() { # same_as_shared DIR
	for f in "${FILES[@]}"; do
		[[ -f "$1/$f" ]] || die "$1/$f did not arrive"
		cmp -s "$1/$f" "$SHARED/$f" || die "$1/$f differs from $SHARED/$f"
	done
}
no_leftovers() { # no_leftovers DIR: no staging folder
	if compgen -G "$1/.fetch-data.*" >/dev/null; then die "staging folder left in $1: $(ls -a "$1")"; fi
}

# --- 1) mirror --------------------------------------------------------------------------
out="$work/out-mirror"
t0=$SECONDS
TRIAGE_DATA_DIR="$out" TRIAGE_DATA_BASE_URL="$base/good" bash scripts/fetch-data.sh >"$work/1.out" 2>"$work/1.err" ||
	{ cat "$work/1.err" >&2; die "fetch from the mirror failed"; }
[[ "$(tail -n1 "$work/1.out")" == "$out" ]] || die "last stdout line is not the data folder: $(cat "$work/1.out")"
same_as_shared "$out"
no_leftovers "$out"
echo "1) mirror: ${#FILES[@]} files fetched into an empty TRIAGE_DATA_DIR, byte-identical, sha256 verified ($((SECONDS - t0)) s)"
TRIAGE_DATA_DIR="$out" TRIAGE_DATA_BASE_URL="$base/good" bash scripts/fetch-data.sh >/dev/null 2>"$work/1b.err" ||
	die "second run failed: $(cat "$work/1b.err")"
grep -q "nothing to fetch" "$work/1b.err" || die "second run fetched again: $(cat "$work/1b.err")"
echo "1) second run: nothing to fetch"

# --- 2) corrupted mirror --------------------------------------------------------------------
out="$work/out-bad"
rc=0
TRIAGE_DATA_DIR="$out" TRIAGE_DATA_BASE_URL="$base/bad" bash scripts/fetch-data.sh >/dev/null 2>"$work/2.err" || rc=$?
[[ $rc -ne 0 ]] || die "a corrupted movie-reviews/train.csv was accepted"
grep -q "SHA-256 mismatch for $base/bad/movie-reviews/train.csv" "$work/2.err" || die "no clear message: $(cat "$work/2.err")"
[[ ! -e "$out/movie-reviews/train.csv" ]] || die "the corrupted file was left at $out/movie-reviews/train.csv"
no_leftovers "$out"
cmp -s "$out/banking77/train.csv" "$SHARED/banking77/train.csv" || die "the good banking77/train.csv was not installed"
echo "2) corrupted mirror: refused (exit $rc): $(grep -m1 'ERROR' "$work/2.err" | sed 's/^fetch-data: //'); no file left"

# --- 3) public path: download + convert ---------------------------------------------------------
good_raw="$(sha "$www/raw/rt-polaritydata.tar.gz")"
real_pins() { awk '$1 == "file" {print $2, $3}' scripts/data-sources.txt; }
pin() { real_pins | awk -v p="$1" '$1 == p {print $2}'; }
sources() { # sources RAW_FILE RAW_SHA: the real file pins, local URLs
	cat <<EOF
file  banking77/train.csv        $(pin banking77/train.csv)  $base/good/banking77/train.csv
file  banking77/categories.json  $(pin banking77/categories.json)  $base/good/banking77/categories.json
raw   rt-polaritydata.tar.gz     $2  $base/raw/$1
file  movie-reviews/train.csv    $(pin movie-reviews/train.csv)  mr:rt-polaritydata.tar.gz
EOF
}
sources rt-polaritydata.tar.gz "$good_raw" >"$work/sources-public.txt"
out="$work/out-public"
t0=$SECONDS
TRIAGE_DATA_DIR="$out" TRIAGE_DATA_SOURCES="$work/sources-public.txt" bash scripts/fetch-data.sh >/dev/null 2>"$work/3.err" ||
	{ cat "$work/3.err" >&2; die "fetch from the public-style sources failed"; }
no_leftovers "$out"
# Every sentence of the archive, labelled by its file: the shared rows plus the 50 extra.
python3 - "$SHARED/movie-reviews/train.csv" "$out/movie-reviews/train.csv" <<'PY' || die "converted CSV is not the archive's sentences"
import csv, collections, sys
shared = collections.Counter((r["text"], r["label"]) for r in csv.DictReader(open(sys.argv[1], newline="", encoding="utf-8")))
got = collections.Counter((r["text"], r["label"]) for r in csv.DictReader(open(sys.argv[2], newline="", encoding="utf-8")))
extra = got - shared
missing = shared - got
if missing or sum(extra.values()) != 50 or any(not t.startswith("held-out") for t, _ in extra):
    sys.exit(f"{sum(missing.values())} shared rows missing, {sum(extra.values())} extra rows")
PY
cmp -s "$out/banking77/train.csv" "$SHARED/banking77/train.csv" || die "banking77/train.csv differs from the shared copy"
echo "3) public path: archive verified, $(grep -o 'converted [0-9]* sentences' "$work/3.err"): every shared row plus the 50 extra, labels from their files ($((SECONDS - t0)) s)"

# --- 4) public path, wrong archive -------------------------------------------------------------
sources rt-polaritydata-corrupt.tar.gz "$good_raw" >"$work/sources-bad.txt"
out="$work/out-public-bad"
rc=0
TRIAGE_DATA_DIR="$out" TRIAGE_DATA_SOURCES="$work/sources-bad.txt" bash scripts/fetch-data.sh >/dev/null 2>"$work/4.err" || rc=$?
[[ $rc -ne 0 ]] || die "an archive that is not the pinned one was accepted"
grep -q "SHA-256 mismatch for $base/raw/rt-polaritydata-corrupt.tar.gz" "$work/4.err" || die "no clear message: $(cat "$work/4.err")"
[[ ! -e "$out/movie-reviews/train.csv" ]] || die "a movie-reviews/train.csv was left from a refused archive"
no_leftovers "$out"
echo "4) wrong archive: refused (exit $rc) before conversion; no file left"

echo "fetch-data-test: PASS"
