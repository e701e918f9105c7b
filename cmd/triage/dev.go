package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/consumer"
	"github.com/triage-ml/triage/internal/broker"
	"github.com/triage-ml/triage/internal/lifecycle"
	"github.com/triage-ml/triage/trainer"
)

// defaultModel says how `triage dev` trains a default model on first start.
type defaultModel struct {
	name, file, textCol, labelCol string
}

var defaultModels = []defaultModel{
	{"support", "banking77/train.csv", "text", "category"},
	{"reviews", "movie-reviews/train.csv", "text", "label"},
}

func devCommand(stdout, stderr io.Writer) *ffcli.Command {
	fset := flag.NewFlagSet("triage dev", flag.ContinueOnError)
	var g globals
	g.register(fset)
	var rt runtimeFlags
	rt.register(fset)
	var cf consumerFlags
	cf.register(fset)
	dataDir := fset.String("data-dir", "data", "state directory: embedded broker log under kafka/, model bundles under models/")
	kafkaAddr := fset.String("kafka-addr", "127.0.0.1:9092", "embedded Kafka broker listen address")
	partitions := fset.Int("partitions", 3, "partitions per topic")
	datasets := fset.String("datasets", cmp.Or(os.Getenv("TRIAGE_DATA_DIR"), "../shared/data"),
		"training data folder (banking77/, movie-reviews/) for models missing on first start; env TRIAGE_DATA_DIR")
	feedback := fset.String("feedback-topic", "triage.feedback", "topic for human labels")
	metricsAddr := fset.String("metrics-addr", "127.0.0.1:9464", `Prometheus /metrics listener ("" disables)`)
	return &ffcli.Command{
		Name:       "dev",
		ShortUsage: "triage dev [--data-dir DIR] [--kafka-addr 127.0.0.1:9092]",
		ShortHelp:  "run every role in one process on an embedded Kafka broker persisted to disk",
		FlagSet:    fset,
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
			modelsDir := filepath.Join(*dataDir, "models")
			routes := cf.routeMap(modelsDir)
			if !cf.routes.set {
				if err := ensureDefaultModels(ctx, modelsDir, *datasets, log); err != nil {
					return err
				}
			}
			topics := []string{cf.predictions, cf.deadLetters, *feedback}
			for t := range routes {
				topics = append(topics, t)
			}
			b, err := broker.Start(broker.Config{Addr: *kafkaAddr, DataDir: filepath.Join(*dataDir, "kafka"),
				Partitions: *partitions, Topics: topics}, log)
			if err != nil {
				return err
			}
			models, closeModels, err := openRoutes(routes, opts)
			if err != nil {
				b.Close()
				return err
			}
			defer closeModels()
			reg := newRegistry()
			c, err := consumer.New(cf.config([]string{b.Addr()}, models, log, reg))
			if err != nil {
				b.Close()
				return err
			}
			m := lifecycle.New(log,
				lifecycle.Role{Name: "broker", Run: b.Run},
				lifecycle.Role{Name: "consumer", Run: c.Run, Ready: c.Ready},
			)
			if *metricsAddr != "" {
				m.Add(lifecycle.Role{Name: "metrics", Run: func(ctx context.Context) error {
					return serveMetrics(ctx, *metricsAddr, reg, func() bool { ok, _ := m.Ready(); return ok }, log)
				}})
			}
			go announceWhenReady(ctx, m, stdout, b.Addr(), routes, cf, *metricsAddr)
			return m.Run(ctx)
		},
	}
}

// announceWhenReady prints the one line a person (or a script) waits for.
func announceWhenReady(ctx context.Context, m *lifecycle.Manager, stdout io.Writer, addr string, routes map[string]string, cf consumerFlags, metricsAddr string) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ok, _ := m.Ready(); ok {
				var in []string
				for topic := range routes {
					in = append(in, topic)
				}
				fmt.Fprintf(stdout, "triage dev ready: kafka %s, input topics %v -> %s (dead letters: %s), metrics http://%s/metrics\n",
					addr, in, cf.predictions, cf.deadLetters, metricsAddr)
				return
			}
		}
	}
}

// ensureDefaultModels trains the default models that have no bundle yet.
func ensureDefaultModels(ctx context.Context, modelsDir, datasets string, log *slog.Logger) error {
	for _, dm := range defaultModels {
		out := filepath.Join(modelsDir, dm.name)
		if _, err := bundle.Load(out); err == nil {
			continue
		} else if !errors.Is(err, bundle.ErrNotBundle) && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("model %s: %w (delete %s to retrain it)", dm.name, err, out)
		}
		data := filepath.Join(datasets, dm.file)
		if _, err := os.Stat(data); err != nil {
			return fmt.Errorf("model %s has no bundle at %s and its training data %s is missing: set TRIAGE_DATA_DIR or --datasets", dm.name, out, data)
		}
		log.Info("training default model (first start)", "model", dm.name, "data", data)
		if _, err := trainer.Train(ctx, trainer.Options{DataPath: data, TextColumn: dm.textCol, LabelColumn: dm.labelCol,
			OutDir: out, Name: dm.name, Seed: 42, Logger: log}); err != nil {
			return fmt.Errorf("train default model %s: %w", dm.name, err)
		}
	}
	return nil
}
