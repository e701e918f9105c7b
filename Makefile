# Lead will extend this; keep targets phony and recipe lines tab-indented.
GO ?= go

.PHONY: onnxruntime build test vet fmt-check

# Fetch and verify the pinned ONNX Runtime shared library into .cache/.
onnxruntime:
	bash scripts/fetch-onnxruntime.sh

build:
	$(GO) build -o bin/triage ./cmd/triage

test:
	$(GO) test ./...

vet:
	$(GO) vet ./...

# Fails listing the offending files when anything is not gofmt-clean.
fmt-check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
