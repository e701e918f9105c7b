# Sourced by scripts that run `triage dev` for end-to-end checks: builds the
# binary if missing, resolves the ONNX Runtime library, and picks free ports.
# Expects repo_root as the working directory, TRIAGE_BIN and a log function.

if [[ ! -x "$TRIAGE_BIN" ]]; then
	log "building $TRIAGE_BIN"
	go build -o "$TRIAGE_BIN" ./cmd/triage
fi
if [[ -z "${ONNXRUNTIME_LIB:-}" ]]; then
	ONNXRUNTIME_LIB="$(bash scripts/fetch-onnxruntime.sh | tail -n1)"
	export ONNXRUNTIME_LIB
fi

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
