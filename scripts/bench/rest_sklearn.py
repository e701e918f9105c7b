"""REST baseline: FastAPI + uvicorn serving the scikit-learn pipeline of train_sklearn.py
(TF-IDF word 1-2 + char_wb 1-4 grams, logistic regression, Banking77, fixed seed).

    python scripts/bench/rest_sklearn.py --model .cache/bench/sklearn-banking77.pkl --port 8001 --workers 2

Same request/response shape as Triage's POST /v1/predict (see rest_common.py). Worker
processes load the pickle themselves (the path travels in REST_SKLEARN_MODEL).

One layout fix, no change to the maths: LogisticRegression.predict_proba computes
X @ coef_.T, and with the fitted C-ordered float64 coef_ scipy copies the whole
77 x n_features matrix on every call (~30 ms per request here). Storing coef_ in
Fortran order makes coef_.T C-contiguous, so the baseline is not handicapped by it.
"""
import argparse
import os
import pickle

import numpy as np

from rest_common import make_app, serve


def load(path):
    with open(path, "rb") as f:
        d = pickle.load(f)
    pipe = d["pipeline"]
    clf = pipe.steps[-1][1]
    clf.coef_ = np.asfortranarray(clf.coef_)
    return make_app(pipe.predict_proba, pipe.classes_, d.get("name", "sklearn"), d.get("version", ""))


app = load(os.environ["REST_SKLEARN_MODEL"]) if os.environ.get("REST_SKLEARN_MODEL") else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=".cache/bench/sklearn-banking77.pkl", help="pickle from train_sklearn.py")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--workers", type=int, default=1)
    a = p.parse_args(argv)
    os.environ["REST_SKLEARN_MODEL"] = os.path.abspath(a.model)
    serve("rest_sklearn", a.host, a.port, a.workers)


if __name__ == "__main__":
    main()
