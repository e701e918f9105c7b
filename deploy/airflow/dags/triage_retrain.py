"""Weekly retraining of Triage's models from Airflow 3 (deploy/airflow/README.md).

Per model (default ``support`` and ``reviews``), as one mapped task group:

1. ``snapshot``: ``triage data snapshot --model NAME --json`` -- base data plus every human label so far, as an
   immutable snapshot in the same store ``triage retrain`` uses; logs rows and label counts.
2. ``retrain``: ``triage retrain NAME --json`` -- snapshot (the same content returns the same snapshot) -> train
   -> evaluate challenger and champion on the frozen evaluation set -> gate -> register -> promote or reject.
   The gate's decision is read from the JSON. A challenger the gate rejects is a valid outcome (registered, not
   promoted, reasons recorded): the task succeeds and says why, unless the run's ``fail_on_reject`` param is set.
   A CLI error (exit status != 0) fails the task with the command's last stderr lines. A model that has never
   received a label while a champion serves has nothing to be evaluated on yet (the CLI's "send feedback before
   the first retraining"): reported as "not retrained", not failed.

Then ``report`` (runs whatever happened upstream) prints one line per model and fails the DAG run when a
model's retrain failed, so a red run always means "look at me".

Configuration (no code change needed):
- Triage binary: Airflow Variable ``triage_bin``, else env ``TRIAGE_BIN``, else ``triage`` on PATH.
- Triage flags: the CLI reads ``TRIAGE_<FLAG>`` variables itself (``triage flags`` lists them), so set
  ``TRIAGE_REGISTRY``, ``TRIAGE_BROKERS``, ``TRIAGE_DATA_DIR`` (training data), ``TRIAGE_SNAPSHOTS``,
  ``TRIAGE_WORK_DIR``, ``TRIAGE_RUNS_DIR``, ``TRIAGE_MLFLOW_URI``, ``TRIAGE_GATE_EPSILON``, ... in the worker's
  environment, or as a JSON object in the Airflow Variable ``triage_env`` (it wins over the environment). Use
  absolute paths: relative defaults (data/registry, ...) would resolve against the worker's working directory.
  The snapshot step passes ``--store`` = the retrain's snapshots folder, so both use one store.
- Models: the run's ``models`` param (``airflow dags trigger triage_retrain -c '{"models": ["support"]}'``),
  else the Variable ``triage_retrain_models`` (comma-separated), else ``support,reviews``.
- ``triage_retrain_timeout_minutes`` (Variable, default 120): per CLI call.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Param, Variable, dag, get_current_context, task, task_group
from airflow.sdk.exceptions import AirflowFailException

DAG_ID = "triage_retrain"

# The models Triage can retrain (trainer.DefaultModels): base file under the training-data folder, columns.
BASES: dict[str, dict[str, str]] = {
    "support": {"file": "banking77/train.csv", "text_column": "text", "label_column": "category"},
    "reviews": {"file": "movie-reviews/train.csv", "text_column": "text", "label_column": "label"},
}
DEFAULT_MODELS = "support,reviews"
# What `triage retrain` says when a champion serves and no label has arrived yet (retrain/retrain.go).
NO_LABELS_YET = "no labels the champion has not trained on yet"


def _triage_env() -> dict[str, str]:
    """The worker's environment plus the Variable ``triage_env`` (a JSON object of TRIAGE_* settings)."""
    env = dict(os.environ)
    extra = Variable.get("triage_env", default="{}")
    try:
        extra = json.loads(extra) if isinstance(extra, str) else extra
    except json.JSONDecodeError as e:
        raise AirflowFailException(f"Variable triage_env is not a JSON object: {e}") from e
    if not isinstance(extra, dict):
        raise AirflowFailException("Variable triage_env must be a JSON object of TRIAGE_* variables")
    env.update({str(k): str(v) for k, v in extra.items()})
    return env


def _setting(env: dict[str, str], name: str, default: str) -> str:
    return env.get(name) or default


def _triage(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Runs the Triage CLI, logging the command and its stderr (Triage's JSON logs)."""
    binary = Variable.get("triage_bin", default="") or env.get("TRIAGE_BIN") or "triage"
    timeout = 60 * float(Variable.get("triage_retrain_timeout_minutes", default="120"))
    cmd = [binary, *args]
    print(f"$ {shlex.join(cmd)}", flush=True)
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as e:
        raise AirflowFailException(f"Triage binary {binary!r} not found: set the Variable triage_bin or TRIAGE_BIN") from e
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"{shlex.join(cmd)} did not finish within {timeout / 60:.0f} min") from e
    if p.stderr:
        print(p.stderr.rstrip(), flush=True)
    return p


def _tail(text: str, n: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


@dag(
    dag_id=DAG_ID,
    description="Weekly retraining of Triage models: snapshot -> retrain -> gate -> promote or reject",
    schedule="@weekly",
    start_date=datetime(2026, 1, 5),
    catchup=False,
    max_active_runs=1,  # triage retrain takes a per-model lock anyway; overlapping runs would only skip
    default_args={"retries": 0, "execution_timeout": timedelta(hours=4)},
    params={
        "models": Param(None, type=["null", "array"], items={"type": "string"},
                        description="models to retrain; null: Variable triage_retrain_models or support,reviews"),
        "fail_on_reject": Param(False, type="boolean",
                                description="fail the run when the gate rejects a challenger (default: report it)"),
    },
    tags=["triage", "retraining"],
    doc_md=__doc__,
)
def triage_retrain():
    @task
    def plan() -> list[str]:
        ctx = get_current_context()
        models = ctx["params"].get("models")
        if not models:
            models = [m.strip() for m in Variable.get("triage_retrain_models", default=DEFAULT_MODELS).split(",")]
        models = [m for m in models if m]
        unknown = sorted(set(models) - BASES.keys())
        if unknown or not models:
            raise AirflowFailException(
                f"cannot retrain {unknown or 'no model'}: Triage retrains models with base data ({', '.join(BASES)})")
        print(f"retraining {', '.join(models)}")
        return models

    @task
    def snapshot(model: str) -> dict[str, Any]:
        env = _triage_env()
        base = BASES[model]
        datasets = _setting(env, "TRIAGE_DATASETS", _setting(env, "TRIAGE_DATA_DIR", "../shared/data"))
        store = _setting(env, "TRIAGE_SNAPSHOTS", "data/snapshots")
        p = _triage(["data", "snapshot", "--model", model, "--data", os.path.join(datasets, base["file"]),
                     "--text-column", base["text_column"], "--label-column", base["label_column"],
                     "--store", store, "--known-models", ",".join(BASES), "--json"], env)
        if p.returncode != 0:
            raise RuntimeError(f"triage data snapshot --model {model} failed (exit {p.returncode}):\n{_tail(p.stderr)}")
        m = json.loads(p.stdout)
        counts = m.get("label_counts") or {}
        spread = f", {min(counts.values())}-{max(counts.values())} rows per label" if counts else ""
        print(f"{model}: snapshot {m.get('id')}: {m.get('rows')} rows, {len(counts)} labels{spread}")
        return {"model": model, "snapshot": m.get("id"), "rows": m.get("rows")}

    @task
    def retrain(snap: dict[str, Any]) -> dict[str, Any]:
        model = snap["model"]
        env = _triage_env()
        p = _triage(["retrain", model, "--json"], env)
        if p.returncode != 0:
            if NO_LABELS_YET in p.stderr:
                out = {"model": model, "decision": "not retrained", "snapshot": snap.get("snapshot"),
                       "reasons": ["no human label yet to evaluate a challenger on: POST /v1/feedback some labels "
                                   "(\"eval\": true holds one out for evaluation)"]}
                print(f"{model}: {_line(out)}")
                return out
            raise RuntimeError(f"triage retrain {model} failed (exit {p.returncode}):\n{_tail(p.stderr)}")
        res = json.loads(p.stdout)
        gate = res.get("gate") or {}
        promoted = bool(res.get("promoted"))
        if promoted != bool(gate.get("passed")):
            raise RuntimeError(f"{model}: inconsistent result: promoted={promoted} but gate passed={gate.get('passed')}")
        if res.get("snapshot") != snap.get("snapshot"):
            print(f"{model}: labels arrived between the steps: retrained on snapshot {res.get('snapshot')}, "
                  f"not {snap.get('snapshot')}")
        out = {
            "model": model, "version": res.get("version"), "snapshot": res.get("snapshot"),
            "decision": "promoted" if promoted else "rejected",
            "champion": gate.get("champion") or None,
            "challenger_macro_f1": gate.get("challenger_macro_f1"), "champion_macro_f1": gate.get("champion_macro_f1"),
            "eval_rows": gate.get("eval_rows"), "reasons": gate.get("reasons") or [],
            "seconds": res.get("seconds"),
        }
        print(f"{model}: {_line(out)}")
        if not promoted and get_current_context()["params"].get("fail_on_reject"):
            raise AirflowFailException(f"{model}: gate rejected {out['version']} (fail_on_reject is set): "
                                       + "; ".join(out["reasons"]))
        return out

    @task_group
    def per_model(model: str):
        return retrain(snapshot(model))

    @task(trigger_rule="all_done")
    def report(models: list[str]) -> list[dict[str, Any]]:
        ti = get_current_context()["ti"]
        results = ti.xcom_pull(task_ids="per_model.retrain", key="return_value") or []
        if isinstance(results, dict):
            results = [results]
        by_model = {r["model"]: r for r in results if r}
        failed = []
        for m in models:
            r = by_model.get(m)
            if r is None:
                print(f"triage_retrain: {m}: FAILED (see the per_model.snapshot / per_model.retrain logs)")
                failed.append(m)
            else:
                print(f"triage_retrain: {m}: {_line(r)}")
        if failed:
            raise AirflowFailException(f"retraining failed for {', '.join(failed)}")
        return list(by_model.values())

    models = plan()
    results = per_model.expand(model=models)
    results >> report(models)


def _line(r: dict[str, Any]) -> str:
    """One line per model: decision, version, scores, reasons."""
    parts = [str(r.get("decision"))]
    if r.get("version"):
        parts.append(str(r["version"]))
    if r.get("snapshot"):
        parts.append(f"(snapshot {r['snapshot']})")
    f1, champ = r.get("challenger_macro_f1"), r.get("champion_macro_f1")
    if isinstance(f1, (int, float)):
        vs = f" vs champion {r['champion']} {champ:.4f}" if r.get("champion") and isinstance(champ, (int, float)) else ""
        parts.append(f"eval macro-F1 {f1:.4f}{vs} on {r.get('eval_rows')} rows")
    line = " ".join(parts)
    if r.get("reasons"):
        line += " -- " + "; ".join(r["reasons"])
    return line


triage_retrain()
