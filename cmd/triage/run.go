package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/consumer"
	"github.com/triage-ml/triage/drift"
	"github.com/triage-ml/triage/gateway"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/broker"
	"github.com/triage-ml/triage/internal/lifecycle"
	"github.com/triage-ml/triage/internal/telemetry"
	"github.com/triage-ml/triage/monitor"
	"github.com/triage-ml/triage/monitoring/elastic"
	"github.com/triage-ml/triage/producer"
	"github.com/triage-ml/triage/registry"
	"github.com/triage-ml/triage/retrain"
	"github.com/triage-ml/triage/review"
	"github.com/triage-ml/triage/schemas"
	"github.com/triage-ml/triage/serving"
	"github.com/triage-ml/triage/snapshot"
	"github.com/triage-ml/triage/tracking"
	"github.com/triage-ml/triage/trainer"
)

// roleDef is one row of the role table: what `--target` may name, what it
// needs, and how it is built. Internal roles (models, metrics) are pulled
// in by the roles that need them and cannot be named alone.
type roleDef struct {
	name     string
	deps     []string // pulled in and started first
	after    []string // started first when also running; not pulled in
	internal bool
	help     string
	build    func(a *app) (lifecycle.Role, error)
}

// roles is the role table. `all` is every public role but the broker,
// which only `triage dev` (or an explicit --target broker) runs.
var roles = []roleDef{
	{name: "elasticsearch", internal: true, help: "ships drift windows, prediction samples and logs to Elasticsearch (--elasticsearch-url)",
		build: (*app).elasticRole},
	{name: "broker", help: "embedded Kafka-protocol broker (kfake), persisted to disk; development only", build: (*app).brokerRole},
	{name: "trainer", after: []string{"broker"}, help: "training jobs (POST /v1/train, triage.train-requests); registers versions; bootstraps default models",
		build: (*app).trainerRole},
	{name: "models", internal: true, after: []string{"broker", "trainer"}, help: "the serving set: loads champions, follows triage.model-updates",
		build: (*app).modelsRole},
	{name: "consumer", deps: []string{"models", "metrics"}, after: []string{"broker"}, help: "classifies input topics into the predictions topic (consumer group, exactly-once)",
		build: (*app).consumerRole},
	{name: "monitor", deps: []string{"metrics"}, after: []string{"elasticsearch", "broker", "trainer"}, help: "drift monitoring: windows of predictions vs each model's reference; triage.drift, Elasticsearch, GET /v1/drift",
		build: (*app).monitorRole},
	{name: "gateway", deps: []string{"models"}, after: []string{"broker", "trainer", "monitor"}, help: "REST API: predict, models, promote/rollback, training jobs, feedback, drift",
		build: (*app).gatewayRole},
	{name: "metrics", internal: true, help: "Prometheus /metrics, /healthz, /readyz", build: (*app).metricsRole},
}

// publicRoles lists the names --target accepts.
func publicRoles() []string {
	var out []string
	for _, r := range roles {
		if !r.internal {
			out = append(out, r.name)
		}
	}
	return out
}

func roleByName(name string) (roleDef, bool) {
	for _, r := range roles {
		if r.name == name {
			return r, true
		}
	}
	return roleDef{}, false
}

// expandTargets turns --target into the roles to run, dependencies
// included, in table order.
func expandTargets(targets []string) ([]roleDef, error) {
	want := map[string]bool{}
	var add func(string) error
	add = func(name string) error {
		if want[name] {
			return nil
		}
		r, ok := roleByName(name)
		if !ok {
			return fmt.Errorf("--target %q: unknown role%s (roles: %s, or all)", name, suggest(name, publicRoles()), strings.Join(publicRoles(), ", "))
		}
		want[name] = true
		for _, d := range r.deps {
			if err := add(d); err != nil {
				return err
			}
		}
		return nil
	}
	if len(targets) == 0 {
		return nil, errors.New("--target: name at least one role (" + strings.Join(publicRoles(), ", ") + ", or all)")
	}
	for _, t := range targets {
		if t == "all" {
			for _, r := range roles {
				if !r.internal && r.name != "broker" {
					if err := add(r.name); err != nil {
						return nil, err
					}
				}
			}
			continue
		}
		if r, ok := roleByName(t); ok && r.internal {
			return nil, fmt.Errorf("--target %q: internal role, run with the roles that need it (roles: %s)", t, strings.Join(publicRoles(), ", "))
		}
		if err := add(t); err != nil {
			return nil, err
		}
	}
	var out []roleDef
	for _, r := range roles {
		if want[r.name] {
			out = append(out, r)
		}
	}
	return out, nil
}

// app holds every role's flags and, once started, what roles share: the
// registry, the serving set, the metrics registry.
type app struct {
	stdout, stderr io.Writer
	command        string // "dev", "run", "consumer", "gateway": for messages
	fs             *flag.FlagSet

	g       globals
	rt      runtimeFlags
	cf      consumerFlags
	gf      gatewayFlags
	rf      retrainFlags
	mf      monitor.Config
	es      elastic.Config
	ef      encoderFlags
	targets string

	brokers, registryDir, updatesTopic, feedbackTopic, datasets, workDir, metricsAddr string
	trainRequests, trainStatus, uploadsDir                                            string
	mlflowURI, runsDir                                                                string
	reconcile, shutdown                                                               time.Duration
	bootstrap                                                                         bool
	trainQueue, trainWorkers                                                          int

	// dev only: the embedded broker and the state folder.
	dataDir, kafkaAddr string
	partitions         int

	// built by start
	log      *slog.Logger
	opts     inference.ModelOptions
	metrics  *prometheus.Registry
	store    *registry.Local
	admin    serving.Admin
	announce *serving.Announcer
	set      *serving.Set
	statics  *serving.Fixed
	broker   *broker.Broker
	running  map[string]bool
	trainEnc *trainer.EncoderSource
	jobs     *trainer.JobService
	consumer *consumer.Consumer
	monitor  *monitor.Monitor
	sink     *elastic.Sink
	gateway  *gateway.Server
	manager  *lifecycle.Manager
	recorder *tracking.Recorder
	closers  []func()
	// unwatchGateway stops the serving set's swaps reaching the gateway.
	unwatchGateway func()
	retrain        *retrain.Runner
	review         *review.Queue
	policies       []retrain.Policy
}

// register adds every role's flags; dev changes a few defaults.
func (a *app) register(fs *flag.FlagSet, dev bool) {
	a.g.register(fs)
	a.rt.register(fs)
	a.cf.register(fs)
	a.gf.register(fs)
	a.rf.register(fs)
	a.mf.RegisterFlags(fs)
	a.es.RegisterFlags(fs)
	a.ef.register(fs, "sentence encoder folder (`make encoder`): default models and training jobs train hybrid heads (n-grams + encoder)",
		"encoder variant of hybrid models")
	fs.StringVar(&a.brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap addresses, comma-separated (dev: the embedded broker)")
	fs.StringVar(&a.registryDir, "registry", "data/registry", "model registry folder (NAME/VERSION/ bundles, aliases, history); shared by every process")
	fs.StringVar(&a.updatesTopic, "updates-topic", serving.UpdatesTopic, `compacted topic of model alias moves ("" disables following; the registry is then re-read every --reconcile-interval)`)
	fs.DurationVar(&a.reconcile, "reconcile-interval", 30*time.Second, "how often the serving set re-reads the registry, covering a missed update event")
	fs.StringVar(&a.feedbackTopic, "feedback-topic", "triage.feedback", "topic POST /v1/feedback publishes human labels to")
	fs.StringVar(&a.datasets, "datasets", "../shared/data",
		"training data folder (banking77/, movie-reviews/) for default models and POST /v1/train data_path (env TRIAGE_DATA_DIR)")
	fs.StringVar(&a.workDir, "work-dir", "data/work", "trainer scratch folder: bundles are trained here, then registered")
	fs.StringVar(&a.uploadsDir, "uploads-dir", "", "where training uploads are kept (default WORK_DIR/uploads); with trainer and gateway in separate processes, a folder both see")
	fs.StringVar(&a.trainRequests, "train-requests-topic", "triage.train-requests", "training jobs, when the trainer runs in another process")
	fs.StringVar(&a.trainStatus, "train-status-topic", "triage.train-status", "training job status (compacted), when the trainer runs in another process")
	fs.StringVar(&a.mlflowURI, "mlflow-uri", "", "MLflow tracking server: training runs, trials and bundles, and the model registry mirrored (\"\" keeps a local run log in --runs-dir)")
	fs.StringVar(&a.runsDir, "runs-dir", "data/runs", "local run log when no --mlflow-uri (triage runs list|show)")
	fs.IntVar(&a.trainQueue, "train-queue", 4, "training jobs that may wait; more are refused with 503")
	fs.IntVar(&a.trainWorkers, "train-workers", 0, "trainer parallelism (0 = half the CPUs)")
	fs.BoolVar(&a.bootstrap, "bootstrap-models", dev, "trainer: give each default model (support, reviews) a champion on start, training it if needed")
	fs.StringVar(&a.metricsAddr, "metrics-addr", "127.0.0.1:9464", `Prometheus /metrics listener ("" disables)`)
	fs.DurationVar(&a.shutdown, "shutdown-timeout", lifecycle.DefaultShutdownTimeout, "longest ordered stop of every role together")
	if dev {
		fs.StringVar(&a.dataDir, "data-dir", "data", "state folder: embedded broker log (kafka/), registry/, work/, api-keys.yaml")
		fs.StringVar(&a.kafkaAddr, "kafka-addr", "127.0.0.1:9092", "embedded Kafka broker listen address")
		fs.IntVar(&a.partitions, "partitions", 3, "partitions per topic of the embedded broker")
	}
}

// newRunCommand builds `triage run` and its shortcuts: dev (all roles +
// the embedded broker), consumer and gateway (one role each).
func newRunCommand(name string, stdout, stderr io.Writer) *ffcli.Command {
	a := &app{stdout: stdout, stderr: stderr, command: name}
	fs := flag.NewFlagSet("triage "+name, flag.ContinueOnError)
	a.fs = fs
	dev := name == "dev"
	a.register(fs, dev)
	usage, help, fixed := "", "", ""
	switch name {
	case "run":
		fs.StringVar(&a.targets, "target", "all", "roles to run, comma-separated: "+strings.Join(publicRoles(), ", ")+"; all = every role but broker")
		usage, help = "triage run --target consumer,gateway [flags]", "run any set of roles in this process (production: one role per process)"
	case "dev":
		fixed = "broker,all"
		usage, help = "triage dev [--data-dir DIR] [--kafka-addr 127.0.0.1:9092]", "run every role in one process on an embedded Kafka broker persisted to disk"
	case "consumer":
		fixed = "consumer"
		usage, help = "triage consumer --brokers HOST:PORT [--route topic=model ...] [flags]", "shortcut for `triage run --target consumer`"
	case "gateway":
		fixed = "gateway"
		usage, help = "triage gateway --api-keys-file FILE [--http-addr 127.0.0.1:8080] [flags]", "shortcut for `triage run --target gateway`"
	}
	var roleHelp strings.Builder
	for _, r := range roles {
		fmt.Fprintf(&roleHelp, "  %-9s %s\n", r.name, r.help)
	}
	return &ffcli.Command{
		Name: name, ShortUsage: usage, ShortHelp: help, FlagSet: fs, Options: parseOptions(),
		LongHelp: help + ".\n\nRoles:\n" + roleHelp.String(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q (flags start with --)", args)
			}
			if fixed != "" {
				a.targets = fixed
			}
			return a.run(ctx, dev)
		},
	}
}

func (a *app) run(ctx context.Context, dev bool) error {
	defs, err := expandTargets(splitList(a.targets))
	if err != nil {
		return err
	}
	if a.reconcile <= 0 || a.shutdown <= 0 {
		return fmt.Errorf("--reconcile-interval %v and --shutdown-timeout %v must be > 0", a.reconcile, a.shutdown)
	}
	if a.log, err = a.g.logger(a.stderr); err != nil {
		return err
	}
	if a.opts, err = a.rt.options(); err != nil {
		return err
	}
	if dev {
		a.devDefaults()
	}
	var runErr error
	defer func() {
		if errors.Is(runErr, lifecycle.ErrShutdownDeadline) {
			return // a stuck role may still use them; the process is exiting
		}
		for i := len(a.closers) - 1; i >= 0; i-- {
			a.closers[i]()
		}
	}()
	a.running = map[string]bool{}
	for _, d := range defs {
		a.running[d.name] = true
	}
	if a.store, err = registry.OpenLocal(a.registryDir, registry.Options{Verify: a.verify}); err != nil {
		return fmt.Errorf("--registry %s: %w", a.registryDir, err)
	}
	a.metrics = telemetry.NewRegistry()
	if a.es.Enabled() {
		// Shipping starts first and stops last, so every role's logs
		// reach Elasticsearch (or are counted as dropped).
		if a.sink, err = elastic.New(a.es, a.metrics, a.log); err != nil {
			return err
		}
		a.log = slog.New(elastic.NewLogHandler(a.log.Handler(), a.sink, slog.LevelInfo))
		slog.SetDefault(a.log)
		esDef, _ := roleByName("elasticsearch")
		defs = append([]roleDef{esDef}, defs...)
		a.running[esDef.name] = true
	}
	tr, mirror, err := tracking.Open(a.mlflowURI, a.runsDir, tracking.MLflowOptions{Logger: a.log})
	if err != nil {
		return fmt.Errorf("--mlflow-uri %s: %w", a.mlflowURI, err)
	}
	a.recorder = &tracking.Recorder{Tracker: tr, Mirror: mirror, Logger: a.log}
	a.statics = serving.NewFixed(a.opts)
	a.closers = append(a.closers, a.statics.Close)
	a.manager = lifecycle.New(a.log)
	a.manager.ShutdownTimeout = a.shutdown
	for _, d := range defs {
		r, err := d.build(a)
		if err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		r.Name = d.name
		for _, dep := range append(slices.Clone(d.deps), d.after...) {
			if a.running[dep] {
				r.Deps = append(r.Deps, dep)
			}
		}
		a.manager.Add(r)
	}
	go a.announceWhenReady(ctx, defs)
	runErr = a.manager.Run(ctx)
	return runErr
}

// devDefaults puts every state path of `triage dev` under --data-dir unless
// set explicitly, and points the roles at the embedded broker.
func (a *app) devDefaults() {
	set := map[string]bool{}
	a.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["registry"] {
		a.registryDir = filepath.Join(a.dataDir, "registry")
		if a.ef.dir != "" {
			// A separate registry, so switching between linear and hybrid
			// never retrains or replaces the other set.
			a.registryDir = filepath.Join(a.dataDir, "registry-hybrid")
		}
	}
	if !set["work-dir"] {
		a.workDir = filepath.Join(a.dataDir, "work")
	}
	if !set["snapshots"] {
		a.rf.snapshots = filepath.Join(a.dataDir, "snapshots")
	}
	if !set["runs-dir"] {
		a.runsDir = filepath.Join(a.dataDir, "runs")
	}
}

// verify is the registry's check before an alias moves: the version must
// open in ONNX Runtime and classify a text.
func (a *app) verify(dir string) error {
	m, err := inference.Open(dir, a.opts)
	if err != nil {
		return err
	}
	defer m.Close()
	_, err = m.Predict(context.Background(), []string{"verify this model version"})
	return err
}

func (a *app) brokerRole() (lifecycle.Role, error) {
	if a.dataDir == "" {
		return lifecycle.Role{}, errors.New("the embedded broker runs under `triage dev` (it needs --data-dir)")
	}
	// The feedback topic is left to its producer, which creates it compacted.
	topics := []string{a.cf.PredictionsTopic, a.cf.DeadLetterTopic}
	for t, target := range a.routes() {
		_ = target
		topics = append(topics, t)
	}
	return lifecycle.Role{
		Start: func(ctx context.Context) error {
			b, err := broker.Start(broker.Config{Addr: a.kafkaAddr, DataDir: filepath.Join(a.dataDir, "kafka"),
				Partitions: a.partitions, Topics: topics}, a.log)
			if err != nil {
				return err
			}
			a.broker, a.brokers = b, b.Addr()
			return nil
		},
		Run: func(ctx context.Context) error { return a.broker.Run(ctx) },
	}, nil
}

// brokerList is --brokers, or the embedded broker's address.
func (a *app) brokerList() []string { return splitList(a.brokers) }

// routes is the --route flags or the default routes (topic -> model name).
func (a *app) routes() map[string]string {
	if a.cf.routes.set {
		return a.cf.routes.dirs
	}
	return map[string]string{"triage.support-queries": "support", "triage.reviews": "reviews"}
}

// isBundleDir tells a --route/--model value naming a folder (a fixed
// bundle, never swapped) from a registry model name.
func isBundleDir(v string) bool {
	return v == passthroughRoute || strings.ContainsAny(v, `/\`) || strings.HasPrefix(v, ".")
}

// servedNames are the registry models this process must serve: the
// consumer's routes and the gateway's --model names that are not folders;
// nil (every model with a champion) when the gateway runs without --model,
// empty when every route is a fixed bundle.
func (a *app) servedNames() []string {
	if a.running["gateway"] && !a.gf.models.set {
		return nil
	}
	seen := map[string]bool{}
	out := []string{} // empty, not nil: no registry model at all
	addName := func(v string) {
		if !isBundleDir(v) && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if a.running["consumer"] {
		for _, v := range a.routes() {
			addName(v)
		}
	}
	if a.running["gateway"] {
		for name, v := range a.gf.models.dirs {
			if v == name || !isBundleDir(v) {
				addName(v)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (a *app) modelsRole() (lifecycle.Role, error) {
	open := func(dir string) (serving.Model, error) { return inference.Open(dir, a.opts) }
	names := a.servedNames()
	set, err := serving.New(serving.Config{Store: a.store, Open: open, Names: names, Instance: a.cf.InstanceID,
		Logger: a.log, Registerer: a.metrics})
	if err != nil {
		return lifecycle.Role{}, err
	}
	a.set = set
	if names != nil && len(names) == 0 {
		// Only fixed bundles (--route topic=DIR): nothing to follow.
		return lifecycle.Role{Stop: set.Close}, nil
	}
	return lifecycle.Role{
		Start: set.Start,
		Run: func(ctx context.Context) error {
			if a.updatesTopic == "" {
				t := time.NewTicker(a.reconcile)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return nil
					case <-t.C:
						set.SyncAll(ctx)
					}
				}
			}
			return set.Follow(ctx, a.brokerList(), a.updatesTopic, a.reconcile)
		},
		Stop: set.Close,
	}, nil
}

// admin promotes through the registry and announces on the updates topic.
func (a *app) adminFor(ctx context.Context) (serving.Admin, error) {
	if a.announce == nil && a.updatesTopic != "" {
		an, err := serving.NewAnnouncer(a.brokerList(), a.updatesTopic, a.store, a.log)
		if err != nil {
			return serving.Admin{}, err
		}
		a.announce = an
		a.closers = append(a.closers, an.Close)
	}
	adm := serving.Admin{Store: a.store, Mirror: tracking.MirrorMoves(a.recorder.Mirror, a.log)}
	if a.announce != nil {
		adm.Announce = a.announce.Announce
	}
	return adm, nil
}

func (a *app) consumerRole() (lifecycle.Role, error) {
	return lifecycle.Role{
		Start: func(ctx context.Context) error {
			routes := map[string]consumer.Predictor{}
			for topic, target := range a.routes() {
				if !isBundleDir(target) {
					routes[topic] = a.set.Route(target)
					continue
				}
				if target == passthroughRoute {
					routes[topic] = consumer.Passthrough{}
					continue
				}
				m, err := a.statics.Get(target)
				if err != nil {
					return fmt.Errorf("route %s: %w", topic, err)
				}
				routes[topic] = m
			}
			cfg := a.cf.config(a.brokerList(), routes, a.log, a.metrics)
			// The last batch is finished within half the one shutdown
			// deadline, so the serving set it uses outlives it.
			cfg.ShutdownTimeout = a.shutdown / 2
			c, err := consumer.New(cfg)
			if err != nil {
				return err
			}
			a.consumer = c
			return nil
		},
		Run: func(ctx context.Context) error {
			// Consuming before a model has a version would only dead-letter
			// its traffic: wait for the first promotion (not ready until
			// then; other roles, the gateway included, start meanwhile).
			for _, target := range a.routes() {
				if !isBundleDir(target) {
					if err := a.waitServed(ctx, target); err != nil {
						return nil // stopped while waiting
					}
				}
			}
			return a.consumer.Run(ctx)
		},
		Ready: func() bool { return a.consumer != nil && a.consumer.Ready() },
	}, nil
}

func (a *app) elasticRole() (lifecycle.Role, error) {
	return lifecycle.Role{Run: func(ctx context.Context) error { return a.sink.Run(ctx) }}, nil
}

func (a *app) monitorRole() (lifecycle.Role, error) {
	return lifecycle.Role{
		Start: func(ctx context.Context) error {
			cfg := a.mf
			cfg.Brokers, cfg.Logger, cfg.Registerer = a.brokerList(), a.log, a.metrics
			cfg.References = a.driftReference
			for topic := range a.routes() {
				cfg.InputTopics = append(cfg.InputTopics, topic)
			}
			if a.sink != nil {
				cfg.Indexer = a.sink
			}
			m, err := monitor.New(cfg)
			if err != nil {
				return err
			}
			a.monitor = m
			return nil
		},
		Run: func(ctx context.Context) error { return a.monitor.Run(ctx) },
	}, nil
}

// driftReference reads a registered version's drift references.
func (a *app) driftReference(ctx context.Context, model, version string) (monitor.ModelReference, error) {
	v, err := a.store.Get(ctx, model, version)
	if err != nil {
		return monitor.ModelReference{}, err
	}
	b, err := bundle.Load(v.Dir)
	if err != nil {
		return monitor.ModelReference{}, err
	}
	ref := monitor.ModelReference{Drift: b.Manifest.Monitoring}
	if _, ok := b.Manifest.Files[bundle.DomainFile]; ok {
		raw, err := os.ReadFile(b.Path(bundle.DomainFile))
		if err != nil {
			return ref, err
		}
		ref.Domain = &drift.DomainReference{}
		if err := json.Unmarshal(raw, ref.Domain); err != nil {
			return ref, fmt.Errorf("%s: %w", bundle.DomainFile, err)
		}
	}
	return ref, nil
}

func (a *app) metricsRole() (lifecycle.Role, error) {
	if a.metricsAddr == "" {
		return lifecycle.Role{}, nil
	}
	return lifecycle.Role{Run: func(ctx context.Context) error {
		return telemetry.Serve(ctx, a.metricsAddr, a.metrics, func() bool { ok, _ := a.manager.Ready(); return ok }, a.log)
	}}, nil
}

// gatewayConfig is the gateway's configuration as flags and the shared
// settings give it.
func (a *app) gatewayConfig() gateway.Config {
	cfg := a.gf.Config
	// The gateway drains within the one shutdown deadline, leaving the rest
	// of it to the roles that stop after it.
	cfg.MaxTextBytes, cfg.DataRoot, cfg.ShutdownTimeout = a.cf.MaxTextBytes, a.datasets, a.shutdown*2/3
	cfg.BatchConcurrency = max(a.opts.Session.PoolSize, 1)
	return cfg
}

func (a *app) gatewayRole() (lifecycle.Role, error) {
	var keyFile string
	if a.command == "dev" && a.gf.KeysFile == "" && !a.gf.DisableAuth {
		// Working auth out of the box: a dev admin key under --data-dir.
		var err error
		if a.gf.KeysFile, keyFile, err = gateway.EnsureDevKey(a.dataDir); err != nil {
			return lifecycle.Role{}, err
		}
	}
	// Refuse bad flags now, not after the roles before it have started.
	if err := a.gatewayConfig().Validate(); err != nil {
		return lifecycle.Role{}, err
	}
	return lifecycle.Role{
		Start: func(ctx context.Context) error {
			cfg := a.gatewayConfig()
			cfg.Logger, cfg.Registerer, cfg.Gatherer = a.log, a.metrics, a.metrics
			if a.consumer != nil {
				cfg.KafkaReady = a.consumer.Ready
			}
			if a.feedbackTopic != "" {
				sink, err := producer.NewFeedbackSink(a.brokerList(), a.feedbackTopic, a.log)
				if err != nil {
					return err
				}
				a.closers = append(a.closers, sink.Close)
				cfg.Feedback = func(ctx context.Context, fb gateway.FeedbackRecord) error {
					return sink.Publish(ctx, schemas.Feedback{ID: fb.ID, Text: fb.Text, Label: fb.Label, Model: fb.Model, Annotator: fb.Annotator, Eval: fb.Eval})
				}
			}
			adm, err := a.adminFor(ctx)
			if err != nil {
				return err
			}
			cfg.Registry = adm
			if a.cf.Review.Topic != "" {
				a.review = review.New(0, a.log)
				cfg.Review = a.review
			}
			if a.monitor != nil {
				cfg.Drift = a.monitor
			}
			cfg.Jobs, err = a.jobsClient(ctx)
			if err != nil {
				return err
			}
			gw, err := gateway.New(cfg)
			if err != nil {
				return err
			}
			a.gateway = gw
			// Fixed bundles first (--model name=dir), then every version the
			// serving set swaps in: the gateway changes between two batches.
			for name, dir := range a.gf.models.dirs {
				if isBundleDir(dir) {
					m, err := a.statics.Get(dir)
					if err != nil {
						return fmt.Errorf("model %s: %w", name, err)
					}
					gw.Serve(name, m, func() {})
				}
			}
			unwatch := a.set.Watch(func(l *serving.Loaded) {
				if !a.gatewayServes(l.Name) {
					l.Release()
					return
				}
				m, ok := l.Model.(gateway.Model)
				if !ok {
					a.log.Error("model cannot serve REST", "model", l.Name, "type", fmt.Sprintf("%T", l.Model))
					l.Release()
					return
				}
				gw.Serve(l.Name, m, l.Release)
			})
			a.unwatchGateway = unwatch
			if keyFile != "" {
				fmt.Fprintf(a.stdout, "triage dev: created an admin API key for the gateway; it is in %s (export TRIAGE_KEY=$(cat %s))\n", keyFile, keyFile)
			}
			return nil
		},
		Run: func(ctx context.Context) error {
			if a.review == nil {
				return a.gateway.Run(ctx)
			}
			g, gctx := errgroup.WithContext(ctx)
			g.Go(func() error { return a.gateway.Run(gctx) })
			g.Go(func() error { return a.review.Follow(gctx, a.brokerList(), a.cf.Review.Topic) })
			return g.Wait()
		},
		// Also when shutdown came between Start and Run: the gateway's
		// entries hold leases on the serving set, which stops after it.
		Stop: func(context.Context) error {
			if a.unwatchGateway != nil {
				a.unwatchGateway()
			}
			if a.gateway != nil {
				return a.gateway.Close()
			}
			return nil
		},
		Ready: func() bool { return a.gateway != nil && a.gateway.Ready() },
	}, nil
}

// announceWhenReady prints the one line a person (or a script) waits for.
func (a *app) announceWhenReady(ctx context.Context, defs []roleDef) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ok, _ := a.manager.Ready(); !ok {
				continue
			}
			var names []string
			for _, d := range defs {
				names = append(names, d.name)
			}
			var parts []string
			if a.running["broker"] || a.running["consumer"] {
				parts = append(parts, "kafka "+a.brokers)
			}
			if a.running["consumer"] {
				var in []string
				for topic := range a.routes() {
					in = append(in, topic)
				}
				slices.Sort(in)
				parts = append(parts, fmt.Sprintf("input topics %v -> %s (dead letters: %s)", in, a.cf.PredictionsTopic, a.cf.DeadLetterTopic))
			}
			if a.gateway != nil {
				parts = append(parts, "gateway http://"+a.gateway.Addr())
			}
			if a.metricsAddr != "" {
				parts = append(parts, "metrics http://"+a.metricsAddr+"/metrics")
			}
			if a.set != nil {
				var served []string
				for _, n := range a.set.Names() {
					served = append(served, n+"@"+a.set.Version(n))
				}
				parts = append(parts, fmt.Sprintf("models %v", served))
			}
			fmt.Fprintf(a.stdout, "triage %s ready: roles %s; %s\n", a.command, strings.Join(names, ","), strings.Join(parts, ", "))
			return
		}
	}
}

func (a *app) trainerRole() (lifecycle.Role, error) {
	return lifecycle.Role{
		Start: func(ctx context.Context) error {
			enc, closeEnc, err := a.ef.open(a.opts)
			if err != nil {
				return err
			}
			a.trainEnc = enc
			a.closers = append(a.closers, closeEnc)
			adm, err := a.adminFor(ctx)
			if err != nil {
				return err
			}
			promote := func(ctx context.Context, name, version, who, why string) error {
				_, err := adm.Promote(ctx, name, version, who, why)
				if errors.Is(err, serving.ErrNotAnnounced) {
					a.log.Warn("promotion recorded but not announced; serving processes follow on their next reconcile", "err", err)
					return nil
				}
				return err
			}
			if a.bootstrap {
				legacy := ""
				if a.dataDir != "" {
					legacy = filepath.Join(a.dataDir, "models") // bundles from before the registry
				}
				if err := trainer.Bootstrap(ctx, trainer.BootstrapConfig{Store: a.store, Datasets: a.datasets, WorkDir: a.workDir,
					Legacy: legacy, Encoder: enc, Logger: a.log,
					Promote: func(ctx context.Context, name, version, who, why string) (registry.Move, error) {
						return registry.Move{}, promote(ctx, name, version, who, why)
					}}); err != nil {
					return err
				}
			}
			cfg := trainer.JobsConfig{Queue: a.trainQueue, Threads: a.trainWorkers, WorkDir: a.workDir, UploadDir: a.uploadDir(),
				Encoder: enc, Logger: a.log, Registerer: a.metrics, Promote: promote,
				Register: func(ctx context.Context, name, dir string, l trainer.Lineage) (string, error) {
					// The parent is what served when the job finished: the
					// version this one would replace.
					var parent string
					if cur, err := a.store.Resolve(ctx, name, registry.Champion); err == nil {
						parent = cur.Version
					}
					v, err := a.store.Register(ctx, name, dir, registry.Lineage{DataPath: l.DataPath, DataSHA256: l.DataSHA256,
						Parent: parent, Metrics: l.Metrics, HyperParams: l.HyperParams, CodeVersion: l.CodeVersion,
						Trigger: "job"}, l.RequestedBy)
					if err == nil {
						a.recorder.Record(ctx, name, v.Version, dir, map[string]string{"trigger": "job", "job_id": l.JobID,
							"requested_by": l.RequestedBy, "source": l.Source})
					}
					return v.Version, err
				}}
			if a.datasets != "" {
				root, err := filepath.Abs(a.datasets)
				if err != nil {
					return fmt.Errorf("--datasets %s: %w", a.datasets, err)
				}
				cfg.DataRoots = []string{root}
			}
			// Jobs also come over Kafka from gateways in other processes,
			// whether or not this process runs a gateway of its own.
			cfg.Kafka = a.trainKafka()
			// Jobs may ask for fine-tuning; when this process cannot (no
			// checkpoint, no Python environment) they fail with the reason.
			ft, ftErr := a.rf.fineTuning(a.ef.dir, a.ef.variant, &a.rt)
			if ftErr != nil && a.rf.fineTune {
				return ftErr
			}
			cfg.FineTune, cfg.FineTuneUnavailable = ft, ftErr
			js, err := trainer.NewJobService(cfg)
			if err != nil {
				return err
			}
			a.jobs = js
			// The learning loop: scheduled and threshold retraining.
			if a.policies, err = a.rf.policies(); err != nil {
				return err
			}
			if len(a.policies) > 0 {
				var feedback *snapshot.FeedbackSource
				if a.feedbackTopic != "" {
					feedback = &snapshot.FeedbackSource{Brokers: a.brokerList(), Topic: a.feedbackTopic, Logger: a.log}
				}
				if a.retrain, err = retrainRunner(&a.rf, a.store, promote, a.opts, a.datasets, a.workDir, feedback, enc, ft, a.recorder, a.cf.DeadLetterTopic, a.log); err != nil {
					return err
				}
			}
			return nil
		},
		Run: func(ctx context.Context) error {
			if a.retrain == nil {
				return a.jobs.Run(ctx)
			}
			// Either ending ends both: the role is one unit.
			g, gctx := errgroup.WithContext(ctx)
			g.Go(func() error { return a.jobs.Run(gctx) })
			g.Go(func() error {
				if err := a.retrain.Run(gctx, a.policies, a.rf.checkEvery); err != nil {
					return fmt.Errorf("retraining: %w", err)
				}
				return nil
			})
			return g.Wait()
		},
		Ready: func() bool { return a.jobs != nil && a.jobs.Ready() },
	}, nil
}

// uploadDir is --uploads-dir, default WORK_DIR/uploads.
func (a *app) uploadDir() string {
	if a.uploadsDir != "" {
		return a.uploadsDir
	}
	return filepath.Join(a.workDir, "uploads")
}

// jobsClient is the trainer in this process, or the trainer role of
// another process through Kafka.
func (a *app) jobsClient(ctx context.Context) (trainer.Jobs, error) {
	if a.jobs != nil {
		return a.jobs, nil
	}
	return a.kafkaJobs(ctx)
}

// trainKafka is where training jobs travel between processes.
func (a *app) trainKafka() *trainer.KafkaConfig {
	if a.trainRequests == "" {
		return nil
	}
	return &trainer.KafkaConfig{Brokers: a.brokerList(), RequestsTopic: a.trainRequests, StatusTopic: a.trainStatus}
}

// kafkaJobs submits training jobs to a trainer in another process; with
// --train-requests-topic "" the gateway has no trainer (503).
func (a *app) kafkaJobs(ctx context.Context) (trainer.Jobs, error) {
	kc := a.trainKafka()
	if kc == nil {
		return nil, nil
	}
	kj, err := trainer.NewKafkaJobs(ctx, trainer.KafkaJobsConfig{Kafka: *kc, UploadDir: a.uploadDir(), Logger: a.log})
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, kj.Close)
	return kj, nil
}

// waitServed blocks until the serving set has a version of name.
func (a *app) waitServed(ctx context.Context, name string) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for waited := 0; a.set.Version(name) == ""; waited++ {
		if waited%50 == 0 {
			a.log.Warn("waiting for a champion version to serve; promote one with `triage models promote`", "model", name, "registry", a.registryDir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// gatewayServes reports whether the gateway serves the registry model name:
// every model unless --model lists names, and never one --model fixes to a
// bundle folder.
func (a *app) gatewayServes(name string) bool {
	if !a.gf.models.set {
		return true
	}
	v, ok := a.gf.models.dirs[name]
	return ok && !isBundleDir(v)
}
