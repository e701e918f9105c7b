#!/usr/bin/env python3
"""Writes encoder-int8.onnx beside a converted encoder's encoder.onnx.

ONNX Runtime dynamic quantisation (PyPI `onnxruntime` tooling, run once as a
build step; Triage itself never needs Python): the weight matrices of the
projection and feed-forward MatMuls become int8 with per-output-channel scales
(per-tensor scales cost MiniLM ~4 points of cosine), and
activations are quantised on the fly. The embedding tables and the
activation-by-activation attention MatMuls stay fp32, where int8 costs
accuracy for little speed. Records the new file's SHA-256 in encoder.json.

usage: python3 scripts/quantize-encoder.py ENCODER_DIR
"""
import hashlib
import json
import os
import sys
import tempfile

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    d = sys.argv[1]
    src = os.path.join(d, "encoder.onnx")
    dst = os.path.join(d, "encoder-int8.onnx")
    manifest_path = os.path.join(d, "encoder.json")
    if not os.path.exists(src) or not os.path.exists(manifest_path):
        print(f"quantize-encoder: {d} has no encoder.onnx/encoder.json (run `triage encoder convert` first)", file=sys.stderr)
        return 1
    model = onnx.load(src, load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    # Only MatMuls with a constant weight: Triage names them *_matmul_*.
    matmuls = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    activation_only = [n.name for n in model.graph.node
                       if n.op_type == "MatMul" and not any(i in weights for i in n.input)]
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".encoder-int8.", suffix=".onnx")
    os.close(fd)
    try:
        quantize_dynamic(src, tmp, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True,
                         nodes_to_exclude=activation_only)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    with open(dst, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    with open(manifest_path) as f:
        manifest = json.load(f)
    manifest.setdefault("files", {})["encoder-int8.onnx"] = digest
    with open(manifest_path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    os.replace(manifest_path + ".tmp", manifest_path)
    print(f"quantize-encoder: {len(matmuls) - len(activation_only)} weight MatMuls to int8, "
          f"{len(activation_only)} attention MatMuls kept fp32: {dst} "
          f"({os.path.getsize(src) >> 20} MiB -> {os.path.getsize(dst) >> 20} MiB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
