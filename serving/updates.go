package serving

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/triage-ml/triage/internal/topics"

	"github.com/triage-ml/triage/internal/kafkalog"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/registry"
)

// UpdatesTopic is the default compacted topic of alias moves.
const UpdatesTopic = "triage.model-updates"

// Event is one alias move, as published on the updates topic.
type Event struct {
	Model   string    `json:"model"`
	Alias   string    `json:"alias"`
	Version string    `json:"version"` // "" when the alias was removed
	Hash    string    `json:"hash,omitempty"`
	Who     string    `json:"who,omitempty"`
	Why     string    `json:"why,omitempty"`
	At      time.Time `json:"at"`
}

// eventKey keys the champion's moves by the model name alone, so
// compaction keeps each model's latest champion; other aliases get keys of
// their own so they never compact a champion move away.
func eventKey(ev Event) string {
	if ev.Alias == registry.Champion {
		return ev.Model
	}
	return ev.Model + "@" + ev.Alias
}

// EventFor describes a registry move.
func EventFor(mv registry.Move, hash string) Event {
	return Event{Model: mv.Model, Alias: mv.Alias, Version: mv.To, Hash: hash, Who: mv.Who, Why: mv.Why, At: mv.At}
}

// EnsureUpdatesTopic creates the updates topic, compacted, if it is missing.
func EnsureUpdatesTopic(ctx context.Context, cl *kgo.Client, topic string) error {
	return topics.EnsureCompacted(ctx, cl, topic, 1)
}

// Publish sends ev to topic and waits for the broker's acknowledgement.
func Publish(ctx context.Context, cl *kgo.Client, topic string, ev Event) error {
	v, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode model update: %w", err)
	}
	rec := &kgo.Record{Topic: topic, Key: []byte(eventKey(ev)), Value: v}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("publish model update to %s: %w", topic, err)
	}
	return nil
}

// Follow reads topic from its start (no consumer group: every process
// sees every move) and syncs each model an event names, until ctx ends.
// Undecodable records are logged and skipped; the registry stays the
// truth, so a skipped event is caught by the next reconcile.
func (s *Set) Follow(ctx context.Context, brokers []string, topic string, reconcile time.Duration, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.ClientID("triage-model-updates"),
		kgo.WithLogger(kafkalog.New(s.log)),
	}, opts...)...)
	if err != nil {
		return fmt.Errorf("follow %s: %w", topic, err)
	}
	defer cl.Close()
	if err := EnsureUpdatesTopic(ctx, cl, topic); err != nil && ctx.Err() == nil {
		s.log.Warn("model updates topic", "err", err)
	}
	tick := time.NewTicker(reconcile)
	defer tick.Stop()
	events := make(chan Event, 64)
	go func() {
		defer close(events)
		for {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil || fs.IsClientClosed() {
				return
			}
			fs.EachError(func(t string, p int32, err error) {
				s.log.Warn("model updates fetch", "topic", t, "partition", p, "err", err)
			})
			fs.EachRecord(func(r *kgo.Record) {
				var ev Event
				if err := json.Unmarshal(r.Value, &ev); err != nil || ev.Model == "" {
					s.log.Warn("undecodable model update skipped", "offset", r.Offset, "err", err)
					return
				}
				select {
				case events <- ev:
				case <-ctx.Done():
				}
			})
		}
	}()
	for {
		select {
		case <-ctx.Done():
			for range events { // let the poller exit
			}
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			if ev.Alias != registry.Champion {
				continue
			}
			s.log.Info("model update", "model", ev.Model, "alias", ev.Alias, "version", ev.Version, "who", ev.Who)
			if err := s.Sync(ctx, ev.Model); err != nil && !errors.Is(err, registry.ErrNotFound) {
				s.log.Warn("model update not applied", "model", ev.Model, "version", ev.Version, "err", err)
			}
		case <-tick.C:
			s.SyncAll(ctx)
		}
	}
}

// Announcer publishes registry moves; the CLI and the trainer use it.
type Announcer struct {
	ensure sync.Once
	cl     *kgo.Client
	topic  string
	store  registry.Store
	log    *slog.Logger
}

// NewAnnouncer connects to brokers; Close releases it.
func NewAnnouncer(brokers []string, topic string, store registry.Store, log *slog.Logger, opts ...kgo.Opt) (*Announcer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A move waits for the broker at most this long: the registry already
	// holds it, so a slow Kafka must not hold up the caller.
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID("triage-model-announcer"),
		kgo.AllowAutoTopicCreation(), kgo.RecordDeliveryTimeout(announceTimeout), kgo.WithLogger(kafkalog.New(log))}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("model updates producer: %w", err)
	}
	return &Announcer{cl: cl, topic: topic, store: store, log: log}, nil
}

// announceTimeout bounds one announcement, topic creation included.
const announceTimeout = 10 * time.Second

// Announce publishes mv; the registry has already recorded it, so serving
// processes that miss the event still converge on their next reconcile.
func (a *Announcer) Announce(ctx context.Context, mv registry.Move) error {
	var hash string
	if mv.To != "" {
		if v, err := a.store.Get(ctx, mv.Model, mv.To); err == nil {
			hash = v.Hash
		}
	}
	ctx, cancel := context.WithTimeout(ctx, announceTimeout)
	defer cancel()
	// Created compacted on first use; where the app may not create topics
	// (the topic provisioned beforehand), producing is all that is needed.
	a.ensure.Do(func() {
		if err := EnsureUpdatesTopic(ctx, a.cl, a.topic); err != nil {
			a.log.Warn("model updates topic not created; producing to it anyway", "topic", a.topic, "err", err)
		}
	})
	return Publish(ctx, a.cl, a.topic, EventFor(mv, hash))
}

// Close releases the Kafka client.
func (a *Announcer) Close() { a.cl.Close() }
