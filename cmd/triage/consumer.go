package main

import (
	"cmp"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/triage-ml/triage/batch"
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
	// Count and wait only: the consumer batches records before they are
	// tokenised, so a token limit applies inside inference, not here.
	c.batch = batch.Default()
	fs.IntVar(&c.batch.MaxCount, "batch-max", c.batch.MaxCount, "most texts per inference micro-batch")
	fs.DurationVar(&c.batch.MaxWait, "batch-wait", c.batch.MaxWait, "longest wait to fill a micro-batch after its first record")
	fs.IntVar(&c.maxPoll, "max-poll-records", 1000, "most records per transaction")
	fs.IntVar(&c.maxTextBytes, "max-text-bytes", 64<<10, "texts longer than this are dead-lettered (text_too_long)")
}

// passthroughRoute as a route's model serves no model (benchmarks).
const passthroughRoute = consumer.PassthroughRoute

func (c *consumerFlags) config(brokers []string, routes map[string]consumer.Predictor, log *slog.Logger, reg prometheus.Registerer) consumer.Config {
	return consumer.Config{
		Brokers: brokers, Group: c.group, Routes: routes, PredictionsTopic: c.predictions, DeadLetterTopic: c.deadLetters,
		Delivery: c.delivery, InstanceID: c.instance, Batch: c.batch,
		MaxPollRecords: c.maxPoll, MaxTextBytes: c.maxTextBytes, Logger: log, Registerer: reg,
	}
}
