package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/consumer"
	"github.com/triage-ml/triage/gateway"
	"github.com/triage-ml/triage/internal/broker"
	"github.com/triage-ml/triage/internal/lifecycle"
	"github.com/triage-ml/triage/schemas"
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
	var gf gatewayFlags
	gf.register(fset)
	metricsAddr := fset.String("metrics-addr", "127.0.0.1:9464", `Prometheus /metrics listener ("" disables)`)
	var ef encoderFlags
	ef.register(fset, "sentence encoder folder (`make encoder`): serve hybrid default models (n-grams + encoder), kept under DATA_DIR/models-hybrid",
		"encoder variant of the hybrid default models")
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
			if ef.dir != "" {
				// A separate folder, so switching between linear and hybrid
				// never retrains or overwrites the other set.
				modelsDir = filepath.Join(*dataDir, "models-hybrid")
			}
			routes := cf.routeMap(modelsDir)
			trainEnc, closeEnc, err := ef.open(opts)
			if err != nil {
				return err
			}
			defer closeEnc()
			if !cf.routes.set {
				if err := ensureDefaultModels(ctx, modelsDir, *datasets, trainEnc, log); err != nil {
					return err
				}
			}
			gf.modelsDir, gf.dataRoot, gf.maxTextBytes = modelsDir, *datasets, cf.maxTextBytes
			devKey, err := ensureDevKey(&gf, *dataDir, log)
			if err != nil {
				return err
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
			defer b.Close()
			// One loaded copy of each bundle serves both the gateway and the consumer.
			set := newModelSet(opts)
			defer set.close()
			gwModels, err := openGatewayModels(gf.modelDirs(), set)
			if err != nil {
				return err
			}
			models, err := openRoutes(routes, set)
			if err != nil {
				return err
			}
			reg := newRegistry()
			c, err := consumer.New(cf.config([]string{b.Addr()}, models, log, reg))
			if err != nil {
				return err
			}
			fb, closeFB, err := feedbackPublisher([]string{b.Addr()}, *feedback, log)
			if err != nil {
				return err
			}
			defer closeFB()
			gcfg, err := gf.config(gwModels, opts, log, reg, fb, c.Ready)
			gcfg.TrainEncoder = trainEnc
			if err != nil {
				return err
			}
			gw, err := gateway.New(gcfg)
			if err != nil {
				return err
			}
			m := lifecycle.New(log,
				lifecycle.Role{Name: "broker", Run: b.Run},
				lifecycle.Role{Name: "consumer", Run: c.Run, Ready: c.Ready},
				lifecycle.Role{Name: "gateway", Run: gw.Run, Ready: gw.Ready},
			)
			if *metricsAddr != "" {
				m.Add(lifecycle.Role{Name: "metrics", Run: func(ctx context.Context) error {
					return serveMetrics(ctx, *metricsAddr, reg, func() bool { ok, _ := m.Ready(); return ok }, log)
				}})
			}
			if devKey != "" {
				fmt.Fprintf(stdout, "triage dev: created an admin API key for the gateway; it is in %s (export TRIAGE_KEY=$(cat %s))\n", devKey, devKey)
			}
			go announceWhenReady(ctx, m, stdout, b.Addr(), routes, cf, *metricsAddr, gf.httpAddr)
			return m.Run(ctx)
		},
	}
}

// announceWhenReady prints the one line a person (or a script) waits for.
func announceWhenReady(ctx context.Context, m *lifecycle.Manager, stdout io.Writer, addr string, routes map[string]string, cf consumerFlags, metricsAddr, httpAddr string) {
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
				slices.Sort(in)
				fmt.Fprintf(stdout, "triage dev ready: kafka %s, input topics %v -> %s (dead letters: %s), gateway http://%s, metrics http://%s/metrics\n",
					addr, in, cf.predictions, cf.deadLetters, httpAddr, metricsAddr)
				return
			}
		}
	}
}

// ensureDefaultModels trains the default models that have no bundle yet:
// linear, or hybrid (n-grams + sentence encoder) when encDir is set.
func ensureDefaultModels(ctx context.Context, modelsDir, datasets string, src *trainer.EncoderSource, log *slog.Logger) error {
	for _, dm := range defaultModels {
		out := filepath.Join(modelsDir, dm.name)
		if b, err := bundle.Load(out); err == nil {
			if err := sameEncoder(b.Manifest, src); err != nil {
				return fmt.Errorf("model %s at %s: %w; delete it to retrain with the current flags", dm.name, out, err)
			}
			continue
		} else if !errors.Is(err, bundle.ErrNotBundle) && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("model %s: %w (delete %s to retrain it)", dm.name, err, out)
		}
		data := filepath.Join(datasets, dm.file)
		if _, err := os.Stat(data); err != nil {
			return fmt.Errorf("model %s has no bundle at %s and its training data %s is missing: set TRIAGE_DATA_DIR or --datasets", dm.name, out, data)
		}
		log.Info("training default model (first start)", "model", dm.name, "data", data, "hybrid", src != nil)
		if _, err := trainer.Train(ctx, trainer.Options{DataPath: data, TextColumn: dm.textCol, LabelColumn: dm.labelCol,
			OutDir: out, Name: dm.name, Seed: 42, Logger: log, Encoder: src}); err != nil {
			return fmt.Errorf("train default model %s: %w", dm.name, err)
		}
	}
	return nil
}

// sameEncoder reports whether a default model was trained the way the
// flags ask: no encoder, or this encoder folder and variant.
func sameEncoder(m bundle.Manifest, src *trainer.EncoderSource) error {
	switch {
	case src == nil && m.Encoder != nil:
		return fmt.Errorf("it is a %s model, but no --encoder is set", m.Graph.Kind)
	case src == nil:
		return nil
	case m.Encoder == nil:
		return fmt.Errorf("it is a %s model, but --encoder %s is set", m.Graph.Kind, src.Dir)
	case m.Encoder.Variant != src.Variant:
		return fmt.Errorf("it was trained with the %s encoder, but --encoder-variant is %s", m.Encoder.Variant, src.Variant)
	case filepath.Clean(m.Encoder.Source) != filepath.Clean(src.Dir):
		return fmt.Errorf("it was trained with the encoder in %s, but --encoder is %s", m.Encoder.Source, src.Dir)
	}
	return nil
}

// ensureDevKey gives `triage dev` working auth out of the box: without
// --api-keys-file (and without --no-auth) it uses DATA_DIR/api-keys.yaml,
// creating it with one admin key whose secret goes to DATA_DIR/dev-api-key
// (mode 0600) — the only place it is stored. It returns that path when it
// created the key.
func ensureDevKey(gf *gatewayFlags, dataDir string, log *slog.Logger) (string, error) {
	if gf.apiKeysFile != "" || gf.noAuth {
		return "", nil
	}
	gf.apiKeysFile = filepath.Join(dataDir, "api-keys.yaml")
	if _, err := os.Stat(gf.apiKeysFile); err == nil {
		return "", nil
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", err
	}
	secret, err := gateway.AddKey(gf.apiKeysFile, "dev", []string{"admin"}, 0, 0)
	if err != nil {
		return "", fmt.Errorf("create dev API key: %w", err)
	}
	keyFile := filepath.Join(dataDir, "dev-api-key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write dev API key: %w", err)
	}
	log.Info("created dev API key", "keys_file", gf.apiKeysFile, "secret_file", keyFile)
	return keyFile, nil
}

// feedbackPublisher sends POST /v1/feedback bodies to the feedback topic as
// schema-valid records, keyed by id, with an idempotent producer.
func feedbackPublisher(brokers []string, topic string, log *slog.Logger) (func(context.Context, gateway.FeedbackRecord) error, func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic), kgo.ClientID("triage-feedback"),
		kgo.WithLogger(consumer.NewKgoLogger(log)))
	if err != nil {
		return nil, nil, fmt.Errorf("feedback producer: %w", err)
	}
	publish := func(ctx context.Context, fb gateway.FeedbackRecord) error {
		now := time.Now().UTC()
		v, err := json.Marshal(schemas.Feedback{ID: fb.ID, Text: fb.Text, Label: fb.Label, Annotator: fb.Annotator, CreatedAt: &now})
		if err != nil {
			return err
		}
		if err := schemas.MustValidator(schemas.KindFeedback).Validate(v); err != nil {
			return fmt.Errorf("feedback record: %w", err)
		}
		return cl.ProduceSync(ctx, &kgo.Record{Key: []byte(fb.ID), Value: v}).FirstErr()
	}
	return publish, cl.Close, nil
}
