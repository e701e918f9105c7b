package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/triage-ml/triage/consumer"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/lifecycle"
)

// dirMapFlag collects repeatable (or comma-separated) key=dir flags:
// --route topic=model-dir, --model name=bundle-dir.
type dirMapFlag struct {
	what string // "route topic" or "model name", for errors
	dirs map[string]string
	set  bool
}

func (m *dirMapFlag) String() string {
	var parts []string
	for k, d := range m.dirs {
		parts = append(parts, k+"="+d)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func (m *dirMapFlag) Set(v string) error {
	if !m.set { // the first explicit value replaces any defaults
		m.dirs, m.set = map[string]string{}, true
	}
	for _, p := range splitList(v) {
		key, dir, ok := strings.Cut(p, "=")
		if !ok || key == "" || dir == "" {
			return fmt.Errorf("%q: want %s=dir", p, cmp.Or(m.what, "key"))
		}
		m.dirs[key] = dir
	}
	return nil
}

// consumerFlags are shared by `triage consumer` and `triage dev`.
type consumerFlags struct {
	group, predictions, deadLetters, delivery, instance string
	batchMax, maxPoll, maxTextBytes                     int
	batchWait                                           time.Duration
	routes                                              dirMapFlag
}

func (c *consumerFlags) register(fs *flag.FlagSet) {
	c.routes.what = "topic"
	fs.Var(&c.routes, "route", "input topic to model bundle, topic=dir (repeatable; default support-queries and reviews); dir \"passthrough\" serves no model (benchmark baseline)")
	fs.StringVar(&c.group, "group", "triage-consumer", "Kafka consumer group")
	fs.StringVar(&c.instance, "instance-id", "", "stable id of this consumer across restarts (e.g. the pod name): static group membership and a stable transactional id, for fast recovery")
	fs.StringVar(&c.predictions, "predictions-topic", "triage.predictions", "topic predictions are published to")
	fs.StringVar(&c.deadLetters, "dead-letter-topic", "triage.dead-letters", "topic rejected inputs are published to, with the reason")
	fs.StringVar(&c.delivery, "delivery", consumer.ExactlyOnce, "exactly-once (Kafka transactions) or at-least-once")
	fs.IntVar(&c.batchMax, "batch-max", 256, "most texts per inference micro-batch")
	fs.DurationVar(&c.batchWait, "batch-wait", 5*time.Millisecond, "longest wait to fill a micro-batch")
	fs.IntVar(&c.maxPoll, "max-poll-records", 1000, "most records per transaction")
	fs.IntVar(&c.maxTextBytes, "max-text-bytes", 64<<10, "texts longer than this are dead-lettered (text_too_long)")
}

// defaultRoutes maps the two default input topics to the two default models.
func defaultRoutes(modelsDir string) map[string]string {
	return map[string]string{
		"triage.support-queries": filepath.Join(modelsDir, "support"),
		"triage.reviews":         filepath.Join(modelsDir, "reviews"),
	}
}

// routeMap is the --route flags, or the defaults under modelsDir.
func (c *consumerFlags) routeMap(modelsDir string) map[string]string {
	if c.routes.set {
		return c.routes.dirs
	}
	return defaultRoutes(modelsDir)
}

// passthroughRoute as a route's model dir serves no model (benchmarks).
const passthroughRoute = "passthrough"

// modelSet loads each bundle directory once, however many topics or names
// refer to it, so the consumer and the gateway can share one copy.
type modelSet struct {
	opts  inference.ModelOptions
	byDir map[string]*inference.Model
}

func newModelSet(opts inference.ModelOptions) *modelSet {
	return &modelSet{opts: opts, byDir: map[string]*inference.Model{}}
}

func (s *modelSet) get(dir string) (*inference.Model, error) {
	dir = filepath.Clean(dir)
	if m, ok := s.byDir[dir]; ok {
		return m, nil
	}
	m, err := inference.Open(dir, s.opts)
	if err != nil {
		return nil, err
	}
	s.byDir[dir] = m
	return m, nil
}

func (s *modelSet) close() {
	for _, m := range s.byDir {
		m.Close()
	}
}

// openRoutes maps each input topic to its model from set.
func openRoutes(routes map[string]string, set *modelSet) (map[string]consumer.Predictor, error) {
	out := map[string]consumer.Predictor{}
	for topic, dir := range routes {
		if dir == passthroughRoute {
			out[topic] = consumer.Passthrough{}
			continue
		}
		m, err := set.get(dir)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", topic, err)
		}
		out[topic] = m
	}
	return out, nil
}

func (c *consumerFlags) config(brokers []string, routes map[string]consumer.Predictor, log *slog.Logger, reg prometheus.Registerer) consumer.Config {
	return consumer.Config{
		Brokers: brokers, Group: c.group, Routes: routes, PredictionsTopic: c.predictions, DeadLetterTopic: c.deadLetters,
		Delivery: c.delivery, InstanceID: c.instance, Batch: consumer.BatchPolicy{MaxRecords: c.batchMax, MaxWait: c.batchWait},
		MaxPollRecords: c.maxPoll, MaxTextBytes: c.maxTextBytes, Logger: log, Registerer: reg,
	}
}

// newRegistry is a process registry with Go and process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// serveMetrics exposes /metrics and /healthz on addr until ctx ends.
func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, ready func() bool, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("metrics listening", "addr", ln.Addr().String())
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func consumerCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage consumer", flag.ContinueOnError)
	var g globals
	g.register(fs)
	var rt runtimeFlags
	rt.register(fs)
	var cf consumerFlags
	cf.register(fs)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap addresses, comma-separated")
	metricsAddr := fs.String("metrics-addr", "127.0.0.1:9464", `Prometheus /metrics listener ("" disables)`)
	return &ffcli.Command{
		Name:       "consumer",
		ShortUsage: "triage consumer --brokers HOST:PORT [--route topic=model-dir ...] [flags]",
		ShortHelp:  "classify input topics into the predictions topic (Kafka consumer group, exactly-once)",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			log, err := g.logger(stderr)
			if err != nil {
				return err
			}
			opts, err := rt.options()
			if err != nil {
				return err
			}
			set := newModelSet(opts)
			defer set.close()
			routes, err := openRoutes(cf.routeMap("data/models"), set)
			if err != nil {
				return err
			}
			reg := newRegistry()
			c, err := consumer.New(cf.config(splitList(*brokers), routes, log, reg))
			if err != nil {
				return err
			}
			return runWithMetrics(ctx, *metricsAddr, reg, c.Ready, log, c.Run)
		},
	}
}

// runWithMetrics runs fn beside the metrics server as one lifecycle:
// either failing stops both.
func runWithMetrics(ctx context.Context, addr string, reg *prometheus.Registry, ready func() bool, log *slog.Logger, fn func(context.Context) error) error {
	m := lifecycle.New(log, lifecycle.Role{Name: "consumer", Run: fn, Ready: ready})
	if addr != "" {
		m.Add(lifecycle.Role{Name: "metrics", Run: func(ctx context.Context) error {
			return serveMetrics(ctx, addr, reg, ready, log)
		}})
	}
	return m.Run(ctx)
}
