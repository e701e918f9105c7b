"""Fit the scikit-learn pipeline the Python streaming baseline serves, and pickle it.

The pipeline is what a Python user would build for Triage's linear model: a
FeatureUnion of TF-IDF over word 1-2 grams and TF-IDF over char_wb 1-4 grams
(Triage's default featurizer: word n-grams up to 2, character n-grams 1-4 inside
padded words, smoothed IDF, L2 rows), then a multinomial LogisticRegression.
Everything is seeded, so the same data gives the same model.

    python3 scripts/bench/train_sklearn.py --data ../shared/data/banking77/train.csv \
        --text-column text --label-column category --out .cache/bench/sklearn-banking77.pkl

The pickle is cached: when --out exists and was fitted from a file with the same
SHA-256 (and this script's same version), nothing is refitted. Prints the output path.
"""
import argparse
import csv
import hashlib
import os
import pickle
import sys
import time

VERSION = 1  # bump when the pipeline changes, so cached pickles are refitted
SEED = 0


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(path, text_col, label_col):
    texts, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            t, y = row.get(text_col), row.get(label_col)
            if t and y:
                texts.append(t)
                labels.append(y)
    if not texts:
        sys.exit(f"train_sklearn: no rows with {text_col!r} and {label_col!r} in {path}")
    return texts, labels


def build():
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    features = FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), lowercase=True, dtype=np.float32)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), lowercase=True, dtype=np.float32)),
    ])
    # C=10: the usual tuned value for TF-IDF on short texts (default 1.0 underfits).
    clf = LogisticRegression(C=10.0, max_iter=1000, random_state=SEED)
    return Pipeline([("features", features), ("clf", clf)])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="training CSV")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="category")
    p.add_argument("--out", default=".cache/bench/sklearn-banking77.pkl", help="pickle to write (cached)")
    a = p.parse_args(argv)

    digest = sha256(a.data)
    key = {"version": VERSION, "data_sha256": digest, "text": a.text_column, "label": a.label_column}
    if os.path.exists(a.out):
        try:
            with open(a.out, "rb") as f:
                if pickle.load(f).get("key") == key:
                    print(a.out)
                    return
        except Exception:
            pass  # unreadable or old format: refit

    texts, labels = load(a.data, a.text_column, a.label_column)
    t0 = time.time()
    pipe = build().fit(texts, labels)
    print(f"train_sklearn: fitted {len(texts)} texts, {len(pipe.classes_)} labels in {time.time() - t0:.1f}s",
          file=sys.stderr)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        pickle.dump({"key": key, "pipeline": pipe, "name": "sklearn-" + os.path.basename(a.data).rsplit(".", 1)[0],
                     "version": f"v{VERSION}-{digest[:12]}"}, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, a.out)
    print(a.out)


if __name__ == "__main__":
    main()
