package producer

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/triage-ml/triage/internal/topics"

	"github.com/triage-ml/triage/internal/kafkalog"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/schemas"
)

// FeedbackSink publishes human labels (POST /v1/feedback) to the feedback
// topic as schema-valid records keyed by id, with an idempotent producer:
// the key makes the topic compactable to the latest label per id.
type FeedbackSink struct {
	cl *kgo.Client
}

// NewFeedbackSink connects to brokers; Close releases it.
func NewFeedbackSink(brokers []string, topic string, log *slog.Logger, opts ...kgo.Opt) (*FeedbackSink, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.ClientID("triage-feedback"), kgo.WithLogger(kafkalog.New(log))}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("feedback producer: %w", err)
	}
	// Compacted and keyed by id: the latest label of an id is the one that
	// counts, and the topic stays the size of the labelled set.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := topics.EnsureCompacted(ctx, cl, topic, -1); err != nil && log != nil {
		log.Warn("feedback topic not created compacted; producing to it anyway", "topic", topic, "err", err)
	}
	return &FeedbackSink{cl: cl}, nil
}

// Publish validates fb against the feedback schema and waits for the
// broker's acknowledgement.
func (s *FeedbackSink) Publish(ctx context.Context, fb schemas.Feedback) error {
	if fb.CreatedAt == nil {
		now := time.Now().UTC()
		fb.CreatedAt = &now
	}
	v, err := json.Marshal(fb)
	if err != nil {
		return fmt.Errorf("encode feedback: %w", err)
	}
	if err := schemas.MustValidator(schemas.KindFeedback).Validate(v); err != nil {
		return fmt.Errorf("feedback record: %w", err)
	}
	if err := s.cl.ProduceSync(ctx, &kgo.Record{Key: []byte(fb.ID), Value: v}).FirstErr(); err != nil {
		return fmt.Errorf("publish feedback: %w", err)
	}
	return nil
}

// Close flushes and releases the client.
func (s *FeedbackSink) Close() { s.cl.Close() }
