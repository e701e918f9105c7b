"""Shared FastAPI app for the REST baselines (rest_sklearn.py, rest_onnx.py).

POST /v1/predict takes Triage's request shape ({"text": ...} or {"texts": [...]},
optional "model") and answers Triage's response shape: {"predictions": [{"label",
"confidence", "scores": top-5 [{"label", "score"}], "model": {"name", "version"}}],
"latency_ms"}. Bodies are validated with pydantic and written with orjson (what a
performance-minded FastAPI user would do). The handler is `async def`: the model call
is CPU-bound and short, so a thread-pool hop would only add overhead. GET /healthz
answers {"status": "ok"}.
"""
import time
from typing import Optional

import numpy as np
import orjson
from fastapi import FastAPI, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel

TOP_K = 5


class PredictRequest(BaseModel):
    text: Optional[str] = None
    texts: Optional[list[str]] = None
    model: Optional[str] = None


def make_app(proba, classes, name, version):
    """proba(texts) -> (n, len(classes)) probabilities."""
    app = FastAPI()
    classes = [str(c) for c in classes]
    ref = {"name": name, "version": version}

    @app.get("/healthz")
    async def healthz():
        return Response(b'{"status":"ok"}', media_type="application/json")

    @app.post("/v1/predict")
    async def predict(req: PredictRequest):
        start = time.perf_counter()
        if (req.text is None) == (req.texts is None):
            raise HTTPException(422, "give text or texts")
        texts = [req.text] if req.text is not None else req.texts
        if not texts or len(texts) > 256:
            raise HTTPException(422, "1-256 texts")
        p = np.asarray(proba(texts), dtype=np.float32)
        k = min(TOP_K, p.shape[1])
        top = np.argsort(-p, axis=1)[:, :k]
        preds = []
        for i in range(len(texts)):
            scores = [{"label": classes[j], "score": float(p[i, j])} for j in top[i]]
            preds.append({"label": scores[0]["label"], "confidence": scores[0]["score"], "scores": scores, "model": ref})
        body = {"predictions": preds, "latency_ms": (time.perf_counter() - start) * 1000}
        return Response(orjson.dumps(body), media_type="application/json")

    return app


def serve(module, host, port, workers):
    """Run module:app under uvicorn (workers > 1: that many processes on one socket)."""
    import os

    import uvicorn

    uvicorn.run(f"{module}:app", host=host, port=port, workers=workers, log_level="warning",
                access_log=False, app_dir=os.path.dirname(os.path.abspath(__file__)))
