"""REST baseline: FastAPI + uvicorn serving the TF-IDF + logistic regression pipeline as
ONNX through onnxruntime (Python), 1 intra-op thread per worker.

    python scripts/bench/rest_onnx.py --prepare --data ../shared/data/banking77/train.csv   # cached
    python scripts/bench/rest_onnx.py --model .cache/bench/onnx-banking77.onnx --port 8002 --workers 2

The pipeline is train_sklearn.py's with one change: skl2onnx 1.18 cannot convert
TfidfVectorizer(analyzer="char_wb") (NotImplementedError), so the character TF-IDF
uses analyzer="char" (1-4 grams, also across word boundaries), the convertible
neighbour; word 1-2 grams, IDF, L2 rows, C and the seed are unchanged. The ONNX
tokeniser splits words on [a-zA-Z0-9_]+ (skl2onnx's stand-in for \\b\\w\\w+\\b), so
probabilities differ slightly from scikit-learn's. StringNormalizer runs with locale
C.UTF-8 (en_US is not installed on the benchmark machines). --prepare fits,
converts and caches MODEL.onnx and MODEL.json (labels); it refits only when the data
or this script's VERSION changes.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

from rest_common import make_app, serve

VERSION = 1


def prepare(data, text_col, label_col, out):
    import warnings

    import train_sklearn

    meta_path = os.path.splitext(out)[0] + ".json"
    key = {"version": VERSION, "train_sklearn": train_sklearn.VERSION, "data_sha256": train_sklearn.sha256(data),
           "text": text_col, "label": label_col}
    try:
        with open(meta_path) as f:
            if json.load(f).get("key") == key and os.path.exists(out):
                return out
    except (OSError, ValueError):
        pass
    from sklearn.feature_extraction.text import TfidfVectorizer
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    texts, labels = train_sklearn.load(data, text_col, label_col)
    pipe = train_sklearn.build()
    pipe.set_params(features__char__analyzer="char")
    t0 = time.time()
    pipe.fit(texts, labels)
    print(f"rest_onnx: fitted {len(texts)} texts in {time.time() - t0:.1f}s", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "conversion of CountVectorizer (char) may not work": checked below
        onx = convert_sklearn(pipe, initial_types=[("text", StringTensorType([None, 1]))], target_opset=17,
                              options={id(pipe.steps[-1][1]): {"zipmap": False}, TfidfVectorizer: {"locale": "C.UTF-8"}})
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "wb") as f:
        f.write(onx.SerializeToString())
    os.replace(out + ".tmp", out)
    sess = session(out)
    sample = texts[::50]
    got = sess.run(["label"], {"text": np.array(sample, dtype=object).reshape(-1, 1)})[0]
    agree = float(np.mean([str(g) == str(w) for g, w in zip(got, pipe.predict(sample))]))
    print(f"rest_onnx: ONNX top-1 agrees with scikit-learn on {agree:.1%} of {len(sample)} texts", file=sys.stderr)
    with open(meta_path, "w") as f:
        json.dump({"key": key, "labels": [str(c) for c in pipe.classes_], "name": "onnx-banking77",
                   "version": f"v{VERSION}-{key['data_sha256'][:12]}", "agreement": agree}, f)
    return out


def session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def load(path):
    with open(os.path.splitext(path)[0] + ".json") as f:
        meta = json.load(f)
    sess = session(path)

    def proba(texts):
        return sess.run(["probabilities"], {"text": np.array(texts, dtype=object).reshape(-1, 1)})[0]

    return make_app(proba, meta["labels"], meta["name"], meta["version"])


app = load(os.environ["REST_ONNX_MODEL"]) if os.environ.get("REST_ONNX_MODEL") else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=".cache/bench/onnx-banking77.onnx", help="ONNX file (with MODEL.json beside it)")
    p.add_argument("--prepare", action="store_true", help="fit and convert into --model (cached), then exit")
    p.add_argument("--data", default="../shared/data/banking77/train.csv")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="category")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8002)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    if a.prepare:
        print(prepare(a.data, a.text_column, a.label_column, a.model))
        return
    os.environ["REST_ONNX_MODEL"] = os.path.abspath(a.model)
    serve("rest_onnx", a.host, a.port, a.workers)


if __name__ == "__main__":
    main()
