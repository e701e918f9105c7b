GO ?= go

.PHONY: dev demo test onnxruntime build vet fmt-check bench

# The main job on the embedded default (see README): every role in one
# process on the embedded Kafka broker; Ctrl-C stops it, nothing is lost.
dev: onnxruntime build
	bin/triage dev

# Offline tour: train both models, evaluate on validation, classify a few texts.
demo:
	bash scripts/demo.sh

# The test command (see README); .ci/run calls it.
test:
	bash scripts/test.sh

# Fetch and verify the pinned ONNX Runtime shared library into .cache/.
onnxruntime:
	bash scripts/fetch-onnxruntime.sh

build:
	$(GO) build -o bin/triage ./cmd/triage

vet:
	$(GO) vet ./...

# Fails listing the offending files when anything is not gofmt-clean.
fmt-check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# Inference benchmark: ORT beside the pure-Go reference (needs `make demo` first).
bench: build onnxruntime
	bin/triage bench predict --model data/models/support --data $${TRIAGE_DATA_DIR:-../shared/data}/banking77/train.csv
