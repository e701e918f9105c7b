package main

import (
	"cmp"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/triage-ml/triage/consumer"
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

// consumerFlags are the consumer's flags (consumer.Config registers its
// own) plus --route, which maps topics to models in the composition.
type consumerFlags struct {
	consumer.Config
	routes dirMapFlag
}

func (c *consumerFlags) register(fs *flag.FlagSet) {
	c.routes.what = "topic"
	fs.Var(&c.routes, "route", "input topic to model: topic=NAME (the registry's champion, hot-swapped) or topic=DIR (a fixed bundle); repeatable; default triage.support-queries=support, triage.reviews=reviews; \"passthrough\" serves no model (benchmark baseline)")
	c.Config.RegisterFlags(fs)
}

// passthroughRoute as a route's model serves no model (benchmarks).
const passthroughRoute = consumer.PassthroughRoute

func (c *consumerFlags) config(brokers []string, routes map[string]consumer.Predictor, log *slog.Logger, reg prometheus.Registerer) consumer.Config {
	cfg := c.Config
	cfg.Brokers, cfg.Routes, cfg.Logger, cfg.Registerer = brokers, routes, log, reg
	return cfg
}
