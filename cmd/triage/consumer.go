package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/triage-ml/triage/batch"
	"github.com/triage-ml/triage/consumer"
	"github.com/triage-ml/triage/inference"
)

// dirMapFlag collects repeatable (or comma-separated) key=dir flags:
// --route topic=model-dir, --model name=bundle-dir.
type dirMapFlag struct {
	what string // "route topic" or "model name", for errors
	bare bool   // a value without "=dir" maps the key to itself (a registry name)
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
		if !ok && m.bare {
			dir, ok = key, true
		}
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
	maxPoll, maxTextBytes                               int
	batch                                               batch.Policy
	routes                                              dirMapFlag
}

func (c *consumerFlags) register(fs *flag.FlagSet) {
	c.routes.what = "topic"
	fs.Var(&c.routes, "route", "input topic to model: topic=NAME (the registry's champion, hot-swapped) or topic=DIR (a fixed bundle); repeatable; default triage.support-queries=support, triage.reviews=reviews; \"passthrough\" serves no model (benchmark baseline)")
	fs.StringVar(&c.group, "group", "triage-consumer", "Kafka consumer group")
	fs.StringVar(&c.instance, "instance-id", "", "stable id of this consumer across restarts (e.g. the pod name): static group membership and a stable transactional id, for fast recovery")
	fs.StringVar(&c.predictions, "predictions-topic", "triage.predictions", "topic predictions are published to")
	fs.StringVar(&c.deadLetters, "dead-letter-topic", "triage.dead-letters", "topic rejected inputs are published to, with the reason")
	fs.StringVar(&c.delivery, "delivery", consumer.ExactlyOnce, "exactly-once (Kafka transactions) or at-least-once")
	c.batch = batch.Default()
	c.batch.RegisterFlags("", fs)
	fs.IntVar(&c.maxPoll, "max-poll-records", 1000, "most records per transaction")
	fs.IntVar(&c.maxTextBytes, "max-text-bytes", 64<<10, "texts longer than this are dead-lettered (text_too_long)")
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

func (c *consumerFlags) config(brokers []string, routes map[string]consumer.Predictor, log *slog.Logger, reg prometheus.Registerer) consumer.Config {
	return consumer.Config{
		Brokers: brokers, Group: c.group, Routes: routes, PredictionsTopic: c.predictions, DeadLetterTopic: c.deadLetters,
		Delivery: c.delivery, InstanceID: c.instance, Batch: c.batch,
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
