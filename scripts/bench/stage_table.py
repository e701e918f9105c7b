"""Per-stage CPU cost per message of a `triage consumer`, from its Go CPU profile.

    python3 scripts/bench/stage_table.py --messages 203000 \
        before=/tmp/prof-old/batched-1.pprof:bin/triage-old after=/tmp/prof/batched-1.pprof:bin/triage

Each argument is LABEL=PROFILE[:BINARY]. Every sample of `go tool pprof -traces` is put in
one stage: first by the innermost frame that names a stage of the model path (featurisation,
ONNX Runtime, top-k, JSON decode, schema validation, JSON encode), else by the outermost
franz-go frame (poll, produce, commit, other Kafka I/O), else garbage collection or other.
A profile covers the consumer's whole life (start-up, the throughput phase and the latency
phase), so --messages is every message it handled; the table gives CPU µs per message and
each stage's share. Go's profiler sees ONNX Runtime's time through the cgo call that runs it
(one intra-op thread runs on the calling thread).
"""
import argparse
import re
import subprocess
import sys

# Innermost-frame rules: the stage of the model path a sample belongs to.
INNER = [
    ("featurisation", re.compile(r"triage/featurizer\.|\.TransformTo?\b|TransformAll")),
    ("ONNX Runtime", re.compile(r"onnxruntime_go|triage/inference\.\(\*SessionPool\)|triage/inference\.runPair|\.runLinearInto|_Cfunc_")),
    ("top-k + decode", re.compile(r"triage/inference\.(topK|decode)")),
    ("calibration + input packing", re.compile(r"triage/inference\.")),
    ("schema validation", re.compile(r"jsonschema")),
    ("JSON encode", re.compile(r"AppendJSON|encoding/json\.(Marshal|\(\*encodeState\)|.*Encoder)")),
    ("JSON decode", re.compile(r"encoding/json\.(Unmarshal|\(\*decodeState\)|.*Decoder|checkValid)|triage/consumer\.decode|triage/schemas\.DecodeInput")),
]
# Outermost franz-go frame: what the Kafka client was doing.
KAFKA = [
    ("commit (end transaction)", re.compile(r"kgo\.\(\*GroupTransactSession\)\.(End|Begin)|EndTransaction|[Cc]ommit|kgo\.\(\*Client\)\.Flush")),
    ("produce", re.compile(r"kgo\.\(\*Client\)\.(Produce|TryProduce)|kgo\.\(\*sink\)|kgo\.\(\*recBuf\)|kgo\.\(\*compressor\)|seqRecBatch|promisedRec|kgo\.\(\*GroupTransactSession\)\.Produce")),
    ("poll + fetch", re.compile(r"kgo\.\(\*source\)|kgo\.\(\*Client\)\.Poll|kgo\.\(\*GroupTransactSession\)\.Poll|kgo\.\(\*cursor\)|readRawRecords|processRespPartition|ProcessFetch")),
]
GC = re.compile(r"runtime\.(gcBgMarkWorker|bgsweep|bgscavenge|gcDrain|markroot|scanobject)")
ORDER = [n for n, _ in INNER] + [n for n, _ in KAFKA] + ["other Kafka I/O", "garbage collection", "other"]


def parse_ms(tok):
    m = re.fullmatch(r"([\d.]+)(ns|us|µs|ms|s|min|h)", tok)
    if not m:
        raise ValueError(tok)
    mult = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1, "s": 1e3, "min": 6e4, "h": 3.6e6}[m.group(2)]
    return float(m.group(1)) * mult


def classify(frames):
    for f in frames:  # innermost first
        for name, rx in INNER:
            if rx.search(f):
                return name
    for f in reversed(frames):  # outermost first
        if "franz-go/pkg/kgo" not in f:
            continue
        for name, rx in KAFKA:
            if rx.search(f):
                return name
    if any("franz-go" in f for f in frames):
        return "other Kafka I/O"
    if any(GC.search(f) for f in frames):
        return "garbage collection"
    return "other"


def stages(profile, binary):
    out = subprocess.run(["go", "tool", "pprof", "-traces", binary, profile], check=True,
                         capture_output=True, text=True).stdout
    totals = dict.fromkeys(ORDER, 0.0)
    for block in out.split("-----------+-------------------------------------------------------")[1:]:
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        head = lines[0].split()
        ms = parse_ms(head[0])
        frames = [head[1]] + [ln.strip() for ln in lines[1:]]
        totals[classify(frames)] += ms
    return totals


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, required=True, help="messages the consumer handled in its life")
    ap.add_argument("--binary", default="bin/triage", help="binary for profiles that name none")
    ap.add_argument("profiles", nargs="+", help="LABEL=PROFILE[:BINARY]")
    args = ap.parse_args()
    cols = []
    for spec in args.profiles:
        label, _, rest = spec.partition("=")
        prof, _, binary = rest.partition(":")
        cols.append((label, stages(prof, binary or args.binary)))
    print("| stage | " + " | ".join(f"{c[0]} µs/msg (share)" for c in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for name in ORDER:
        cells = []
        for _, t in cols:
            total = sum(t.values())
            cells.append(f"{1000 * t[name] / args.messages:.2f} ({100 * t[name] / total:.0f}%)" if total else "—")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| **total** | " + " | ".join(f"**{1000 * sum(t.values()) / args.messages:.2f}**" for _, t in cols) + " |")


if __name__ == "__main__":
    sys.exit(main())
