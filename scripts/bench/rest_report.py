"""Render scripts/bench-rest.sh's results (JSON lines from `triage bench rest --json`) as
markdown: one latency table per rate for every server, saturation per server, and the
ratios of Triage's saturation to the best worker count of each Python baseline, and
Triage's p99 at the goal rates beside the floor-healthz run's (a constant handler).

    python scripts/bench/rest_report.py RESULTS.jsonl
"""
import json
import sys


def fmt(r):
    if r is None:
        return "—"
    mark = "" if r["sustained"] else " ✗"
    return f'{r["p50_ms"]:.2f} / {r["p99_ms"]:.2f} / {r["p999_ms"]:.2f} ({r["throughput"]:.0f}, {100 * r["success"]:.1f}%){mark}'


def main(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    rates = sorted({r["rate"] for run in runs for r in run["rates"]})
    print("Latency per offered rate: p50 / p99 / p99.9 ms (achieved req/s, success); ✗ = not sustained; — = not run "
          "(stopped after 2 unsustained rates).\n")
    print("| req/s | " + " | ".join(run["name"] for run in runs) + " |")
    print("|---:|" + "---|" * len(runs))
    for rate in rates:
        cells = [fmt(next((r for r in run["rates"] if r["rate"] == rate), None)) for run in runs]
        print(f"| {rate} | " + " | ".join(cells) + " |")
    print("\n| server | saturation req/s |\n|---|---:|")
    for run in runs:
        print(f'| {run["name"]} | {run["saturation"]} |')

    def best(prefix):
        c = [run for run in runs if run["name"].startswith(prefix)]
        return max(c, key=lambda run: run["saturation"]) if c else None

    triage = next((run for run in runs if run["name"] == "triage"), None)
    if triage is None:
        return
    print()
    for prefix, label in (("fastapi-sklearn", "FastAPI + scikit-learn"), ("fastapi-onnx", "FastAPI + onnxruntime")):
        b = best(prefix)
        if b is None:
            continue
        ratio = f'{triage["saturation"] / b["saturation"]:.1f}x' if b["saturation"] else "∞ (baseline sustained no rate)"
        print(f'- Triage saturation vs {label} (best: {b["name"]}, {b["saturation"]} req/s): **{ratio}**')
    floor = next((run for run in runs if run["name"] == "floor-healthz"), None)
    for rate, bound in ((2000, 1.0), (10000, 5.0)):
        r = next((r for r in triage["rates"] if r["rate"] == rate), None)
        if r is not None:
            ok = "met" if r["p99_ms"] < bound and r["sustained"] else "NOT met"
            line = f'- Triage p99 at {rate} req/s: {r["p99_ms"]:.2f} ms (goal < {bound:g} ms: {ok})'
            f = floor and next((f for f in floor["rates"] if f["rate"] == rate), None)
            if f:
                line += f'; the constant handler (GET /healthz, same gateway and driver): {f["p99_ms"]:.2f} ms'
            print(line)


if __name__ == "__main__":
    main(sys.argv[1])
