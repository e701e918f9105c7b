package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/triage-ml/triage/gateway"
	"github.com/triage-ml/triage/inference"
)

// gatewayFlags configure the REST gateway. The role composition sets the
// settings shared with other roles itself: maxTextBytes (the consumer's
// --max-text-bytes) and dataRoot (--datasets).
type gatewayFlags struct {
	httpAddr, apiKeysFile, dataRoot   string
	noAuth, dynamicBatching           bool
	models                            dirMapFlag
	maxBatch, maxTextBytes, bodyLimit int
	uploadLimit, batchMaxTexts, burst int
	rate                              float64
	batchWait, shutdownTimeout        time.Duration
}

// register adds every gateway flag but the shared ones (see gatewayFlags).
func (g *gatewayFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.httpAddr, "http-addr", "127.0.0.1:8080", "REST API listen address")
	fs.StringVar(&g.apiKeysFile, "api-keys-file", "", "API keys file (YAML, or JSON if named .json) from `triage apikey add`; required unless --no-auth")
	fs.BoolVar(&g.noAuth, "no-auth", false, "serve every route without an API key (local development only)")
	g.models.what, g.models.bare = "name", true
	fs.Var(&g.models, "model", "models the gateway serves: name (from the registry) or name=bundle-dir (a fixed bundle, never swapped); repeatable; default every model with a champion")
	fs.IntVar(&g.maxBatch, "max-batch", 256, "most texts in one /v1/predict request")
	fs.IntVar(&g.bodyLimit, "body-limit", 4<<20, "largest JSON request body in bytes (413 above)")
	fs.IntVar(&g.uploadLimit, "upload-limit", 64<<20, "largest training-data upload in bytes (413 above)")
	fs.BoolVar(&g.dynamicBatching, "dynamic-batching", true, "coalesce concurrent /v1/predict requests per model into one inference call")
	fs.IntVar(&g.batchMaxTexts, "dynamic-batch-max", 256, "most texts in one coalesced inference call")
	fs.DurationVar(&g.batchWait, "dynamic-batch-wait", time.Millisecond, "longest wait for a coalesced batch to fill while the model is idle (0 = run as soon as it is free)")
	fs.Float64Var(&g.rate, "rate", 50, "default per-key rate limit, requests/s (keys may override)")
	fs.IntVar(&g.burst, "burst", 100, "default per-key burst (keys may override)")
}

// config builds the gateway configuration; feedback and kafkaReady may be nil.
func (g *gatewayFlags) config(models map[string]gateway.Model, opts inference.ModelOptions, log *slog.Logger,
	reg *prometheus.Registry, feedback func(context.Context, gateway.FeedbackRecord) error, kafkaReady func() bool) (gateway.Config, error) {
	cfg := gateway.Config{
		Addr: g.httpAddr, Models: models, ModelOptions: opts, Feedback: feedback, KafkaReady: kafkaReady,
		DisableAuth: g.noAuth, DefaultRate: g.rate, DefaultBurst: g.burst,
		BodyLimit: g.bodyLimit, UploadLimit: g.uploadLimit, MaxBatch: g.maxBatch, MaxTextBytes: g.maxTextBytes,
		DisableDynamicBatching: !g.dynamicBatching, BatchMaxTexts: g.batchMaxTexts, BatchMaxWait: cmp.Or(g.batchWait, -1), // 0: no wait
		BatchConcurrency: max(opts.Session.PoolSize, 1),
		DataRoot:         g.dataRoot,
		Registerer:       reg, Gatherer: reg, ShutdownTimeout: g.shutdownTimeout, Logger: log,
	}
	var errs []error
	for _, v := range []struct {
		flag string
		n    int
	}{{"--max-batch", g.maxBatch}, {"--max-text-bytes", g.maxTextBytes}, {"--body-limit", g.bodyLimit},
		{"--upload-limit", g.uploadLimit}, {"--dynamic-batch-max", g.batchMaxTexts}, {"--burst", g.burst}} {
		if v.n < 1 {
			errs = append(errs, fmt.Errorf("%s %d: must be >= 1", v.flag, v.n))
		}
	}
	if g.rate <= 0 {
		errs = append(errs, fmt.Errorf("--rate %v: must be > 0", g.rate))
	}
	if g.batchWait < 0 {
		errs = append(errs, errors.New("--dynamic-batch-wait must not be negative"))
	}
	switch {
	case g.apiKeysFile != "" && g.noAuth:
		errs = append(errs, errors.New("--api-keys-file and --no-auth exclude each other"))
	case g.apiKeysFile != "":
		keys, err := gateway.LoadKeys(g.apiKeysFile)
		if err != nil {
			errs = append(errs, err)
		}
		cfg.Keys = keys
	case !g.noAuth:
		errs = append(errs, errors.New("--api-keys-file is required (create one with `triage apikey add --file FILE --name NAME --scopes predict`), or pass --no-auth for local development"))
	}
	return cfg, errors.Join(errs...)
}
