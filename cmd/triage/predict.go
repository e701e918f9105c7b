package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/inference"
)

// runtimeFlags configure ONNX Runtime for any command that serves a model.
type runtimeFlags struct {
	ortLib       string
	intraThreads int
	sessions     int
	topK         int
	provider     string
	encThreads   int
}

func (r *runtimeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.ortLib, "ort-lib", "", "path to libonnxruntime.so (default: $ONNXRUNTIME_LIB, then .cache/onnxruntime from `make onnxruntime`)")
	fs.IntVar(&r.intraThreads, "intra-op-threads", 1, "ONNX Runtime intra-op threads per session (0 = ORT default)")
	fs.IntVar(&r.sessions, "sessions", 1, "ONNX Runtime sessions in the pool (concurrent batches)")
	fs.IntVar(&r.topK, "top-k", 5, "scores returned per prediction")
	r.registerEncoder(fs)
}

// registerEncoder adds the flags that matter to commands running only the
// encoder (training).
func (r *runtimeFlags) registerEncoder(fs *flag.FlagSet) {
	fs.StringVar(&r.provider, "provider", "cpu", `ONNX Runtime execution provider: "cpu" or "cuda" (falls back to cpu, with a warning, when CUDA is unavailable)`)
	fs.IntVar(&r.encThreads, "encoder-threads", 0, "ONNX Runtime intra-op threads of a sentence encoder session (0 = one per core)")
}

func (r *runtimeFlags) options() (inference.ModelOptions, error) {
	if r.sessions < 1 || r.intraThreads < 0 || r.topK < 1 || r.encThreads < 0 {
		return inference.ModelOptions{}, errors.New("--sessions and --top-k must be >= 1, --intra-op-threads and --encoder-threads >= 0")
	}
	if r.provider != inference.ProviderCPU && r.provider != inference.ProviderCUDA {
		return inference.ModelOptions{}, fmt.Errorf("--provider %q: use %q or %q", r.provider, inference.ProviderCPU, inference.ProviderCUDA)
	}
	return inference.ModelOptions{
		ORTLib:         r.ortLib,
		Session:        inference.SessionOptions{IntraOpThreads: r.intraThreads, PoolSize: r.sessions, Provider: r.provider},
		TopK:           r.topK,
		EncoderThreads: r.encThreads,
	}, nil
}

func predictCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage predict", flag.ContinueOnError)
	var g globals
	g.register(fs)
	var rt runtimeFlags
	rt.register(fs)
	modelDir := fs.String("model", "", "model bundle directory (required)")
	return &ffcli.Command{
		Name:       "predict",
		ShortUsage: "triage predict --model DIR TEXT...",
		ShortHelp:  "classify texts given as arguments; one JSON line per text",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, texts []string) error {
			if *modelDir == "" {
				return errors.New("predict: --model DIR is required")
			}
			if len(texts) == 0 {
				return errors.New("predict: give at least one TEXT argument")
			}
			opts, err := rt.options()
			if err != nil {
				return err
			}
			m, err := inference.Open(*modelDir, opts)
			if err != nil {
				return err
			}
			defer m.Close()
			preds, err := m.Predict(ctx, texts)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			for i, p := range preds {
				if err := enc.Encode(struct {
					Text string `json:"text"`
					inference.Prediction
				}{texts[i], p}); err != nil {
					return fmt.Errorf("predict: write: %w", err)
				}
			}
			return nil
		},
	}
}
