-- wrk script for POST /v1/predict: one support-model text per request.
-- The API key comes from $TRIAGE_KEY (see scripts/bench-gateway.sh).
local key = os.getenv("TRIAGE_KEY") or ""
local text = os.getenv("BENCH_TEXT") or "I am still waiting on my card"
local model = os.getenv("BENCH_MODEL") or "support"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = string.format('{"model":"%s","text":"%s"}', model, text)

-- No response() callback: it would make wrk buffer every body and skew the
-- client side; non-2xx answers show in wrk's "Non-2xx or 3xx responses" line.
