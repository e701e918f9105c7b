package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/gateway"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/lifecycle"
)

// gatewayFlags configure the REST gateway; `triage gateway` registers them
// all. A command composing the gateway with other roles (`triage dev`)
// calls register and sets the shared settings itself: maxTextBytes (the
// consumer's --max-text-bytes), modelsDir and dataRoot.
type gatewayFlags struct {
	httpAddr, apiKeysFile, dataRoot, modelsDir string
	noAuth, dynamicBatching                    bool
	models                                     dirMapFlag
	maxBatch, maxTextBytes, bodyLimit          int
	uploadLimit, batchMaxTexts, trainQueue     int
	trainWorkers, burst                        int
	rate                                       float64
	batchWait, shutdownTimeout                 time.Duration
}

// register adds every gateway flag except --max-text-bytes, --models-dir
// and --data-root (see gatewayFlags).
func (g *gatewayFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.httpAddr, "http-addr", "127.0.0.1:8080", "REST API listen address")
	fs.StringVar(&g.apiKeysFile, "api-keys-file", "", "API keys file (YAML, or JSON if named .json) from `triage apikey add`; required unless --no-auth")
	fs.BoolVar(&g.noAuth, "no-auth", false, "serve every route without an API key (local development only)")
	g.models.what = "name"
	fs.Var(&g.models, "model", "model to serve, name=bundle-dir (repeatable; default: support and reviews under --models-dir, where present)")
	fs.IntVar(&g.maxBatch, "max-batch", 256, "most texts in one /v1/predict request")
	fs.IntVar(&g.bodyLimit, "body-limit", 4<<20, "largest JSON request body in bytes (413 above)")
	fs.IntVar(&g.uploadLimit, "upload-limit", 64<<20, "largest training-data upload in bytes (413 above)")
	fs.BoolVar(&g.dynamicBatching, "dynamic-batching", true, "coalesce concurrent /v1/predict requests per model into one inference call")
	fs.IntVar(&g.batchMaxTexts, "dynamic-batch-max", 256, "most texts in one coalesced inference call")
	fs.DurationVar(&g.batchWait, "dynamic-batch-wait", time.Millisecond, "longest wait for a coalesced batch to fill while the model is idle (0 = run as soon as it is free)")
	fs.Float64Var(&g.rate, "rate", 50, "default per-key rate limit, requests/s (keys may override)")
	fs.IntVar(&g.burst, "burst", 100, "default per-key burst (keys may override)")
	fs.IntVar(&g.trainQueue, "train-queue", 4, "training jobs that may wait; more are refused with 503")
	fs.IntVar(&g.trainWorkers, "train-workers", 0, "trainer parallelism (0 = half the CPUs)")
	fs.DurationVar(&g.shutdownTimeout, "shutdown-timeout", 10*time.Second, "longest graceful drain of in-flight requests on shutdown")
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
		DataRoot:         g.dataRoot, ModelsDir: g.modelsDir, TrainQueue: g.trainQueue, TrainWorkers: g.trainWorkers,
		Registerer: reg, Gatherer: reg, ShutdownTimeout: g.shutdownTimeout, Logger: log,
	}
	var errs []error
	for _, v := range []struct {
		flag string
		n    int
	}{{"--max-batch", g.maxBatch}, {"--max-text-bytes", g.maxTextBytes}, {"--body-limit", g.bodyLimit},
		{"--upload-limit", g.uploadLimit}, {"--dynamic-batch-max", g.batchMaxTexts}, {"--train-queue", g.trainQueue}, {"--burst", g.burst}} {
		if v.n < 1 {
			errs = append(errs, fmt.Errorf("%s %d: must be >= 1", v.flag, v.n))
		}
	}
	if g.rate <= 0 {
		errs = append(errs, fmt.Errorf("--rate %v: must be > 0", g.rate))
	}
	if g.batchWait < 0 || g.trainWorkers < 0 {
		errs = append(errs, errors.New("--dynamic-batch-wait and --train-workers must not be negative"))
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

// modelDirs is the --model flags, or the default models present under modelsDir.
func (g *gatewayFlags) modelDirs() map[string]string {
	if g.models.set {
		return g.models.dirs
	}
	out := map[string]string{}
	for _, name := range []string{"support", "reviews"} {
		dir := filepath.Join(g.modelsDir, name)
		if _, err := os.Stat(filepath.Join(dir, bundle.ManifestFile)); err == nil {
			out[name] = dir
		}
	}
	return out
}

// openGatewayModels maps each served name to its model from set.
func openGatewayModels(dirs map[string]string, set *modelSet) (map[string]gateway.Model, error) {
	out := map[string]gateway.Model{}
	for name, dir := range dirs {
		m, err := set.get(dir)
		if err != nil {
			return nil, fmt.Errorf("model %s: %w", name, err)
		}
		out[name] = m
	}
	return out, nil
}

func gatewayCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage gateway", flag.ContinueOnError)
	var g globals
	g.register(fs)
	var rt runtimeFlags
	rt.register(fs)
	var gf gatewayFlags
	gf.register(fs)
	fs.IntVar(&gf.maxTextBytes, "max-text-bytes", 64<<10, "longest text in bytes (422 above)")
	fs.StringVar(&gf.modelsDir, "models-dir", "data/models", `where trained bundles are written (NAME-VERSION/) and default models are found ("" disables training)`)
	fs.StringVar(&gf.dataRoot, "data-root", defaultDataRoot(), `folder that POST /v1/train "data_path" values are relative to ("" allows uploads only)`)
	var ef encoderFlags
	ef.register(fs, "sentence encoder folder: training jobs then train hybrid heads (n-grams + encoder)", "encoder variant for training jobs")
	fs.SetOutput(stderr)
	return &ffcli.Command{
		Name:       "gateway",
		ShortUsage: "triage gateway --api-keys-file FILE [--http-addr 127.0.0.1:8080] [--model name=dir ...] [flags]",
		ShortHelp:  "serve the REST API: predict, models, training jobs, feedback, metrics, OpenAPI and a web UI",
		LongHelp: "Serves /v1/predict, /v1/models, /v1/train, /v1/feedback, /metrics (admin key), /healthz, /readyz,\n" +
			"/openapi.json and a small web UI at /. Keys come from --api-keys-file (see `triage apikey add`).\n" +
			"Standalone, /v1/feedback answers 503: feedback needs Kafka (`triage dev` wires it).",
		FlagSet: fs,
		Options: parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			log, err := g.logger(stderr)
			if err != nil {
				return err
			}
			opts, err := rt.options()
			if err != nil {
				return err
			}
			reg := newRegistry()
			cfg, err := gf.config(nil, opts, log, reg, nil, nil)
			if err != nil {
				return err
			}
			trainEnc, closeEnc, err := ef.open(opts)
			if err != nil {
				return err
			}
			defer closeEnc()
			cfg.TrainEncoder = trainEnc
			dirs := gf.modelDirs()
			if len(dirs) == 0 {
				log.Warn("no models to serve: /readyz answers 503 until a training job activates one", "models_dir", gf.modelsDir)
			}
			set := newModelSet(opts)
			models, err := openGatewayModels(dirs, set)
			if err != nil {
				set.close()
				return err
			}
			cfg.Models, cfg.OwnModels = models, true // closed when replaced, or when Run returns
			s, err := gateway.New(cfg)
			if err != nil {
				set.close()
				return err
			}
			go announceGateway(ctx, s, stdout)
			return lifecycle.New(log, lifecycle.Role{Name: "gateway", Run: s.Run, Ready: s.Ready}).Run(ctx)
		},
	}
}

// defaultDataRoot is $TRIAGE_DATA_DIR, else ../shared/data (as `triage dev`).
func defaultDataRoot() string {
	if d := os.Getenv("TRIAGE_DATA_DIR"); d != "" {
		return d
	}
	return "../shared/data"
}

// announceGateway prints the line a person (or a script) waits for.
func announceGateway(ctx context.Context, s *gateway.Server, stdout io.Writer) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if addr := s.Addr(); addr != "" {
				fmt.Fprintf(stdout, "triage gateway listening: http://%s/ (API /v1, docs /openapi.json)\n", addr)
				return
			}
		}
	}
}
