// Package review keeps the queue of uncertain predictions a person can
// label (active learning): it follows the review topic the consumers write
// to, keeps the latest item per id, and forgets an item once it has been
// labelled, so the gateway can list what is left, most uncertain first.
package review

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/internal/kafkalog"
	"github.com/triage-ml/triage/schemas"
)

// DefaultKeep bounds the items held in memory; the oldest go first.
const DefaultKeep = 1000

// Queue is the review queue as one gateway sees it.
type Queue struct {
	keep int
	log  *slog.Logger

	mu      sync.Mutex
	items   map[string]item
	seq     int64
	labeled map[string]bool
}

type item struct {
	r   schemas.Review
	seq int64 // arrival order, for dropping the oldest
}

// New returns an empty queue holding at most keep items (0: DefaultKeep).
func New(keep int, log *slog.Logger) *Queue {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Queue{keep: cmp.Or(keep, DefaultKeep), log: log, items: map[string]item{}, labeled: map[string]bool{}}
}

// Add records one review item (the latest per id wins), unless the id was
// labelled already.
func (q *Queue) Add(r schemas.Review) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.labeled[r.ID] {
		return
	}
	q.seq++
	q.items[r.ID] = item{r: r, seq: q.seq}
	if len(q.items) > q.keep {
		oldest, at := "", int64(-1)
		for id, it := range q.items {
			if at < 0 || it.seq < at {
				oldest, at = id, it.seq
			}
		}
		delete(q.items, oldest)
	}
}

// Done forgets id: a person labelled it.
func (q *Queue) Done(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.items, id)
	q.labeled[id] = true
}

// List returns up to limit items of model ("" = every model), smallest
// margin first: the ones the model is least sure of.
func (q *Queue) List(model string, limit int) []schemas.Review {
	q.mu.Lock()
	out := make([]schemas.Review, 0, len(q.items))
	for _, it := range q.items {
		if model == "" || it.r.Model.Name == model {
			out = append(out, it.r)
		}
	}
	q.mu.Unlock()
	slices.SortFunc(out, func(a, b schemas.Review) int {
		return cmp.Or(cmp.Compare(a.Margin, b.Margin), cmp.Compare(a.ID, b.ID))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Follow reads the review topic from its start (no consumer group: every
// gateway sees every item) into q until ctx ends. Undecodable records are
// skipped with a warning.
func (q *Queue) Follow(ctx context.Context, brokers []string, topic string, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ClientID("triage-review"), kgo.WithLogger(kafkalog.New(q.log))}, opts...)...)
	if err != nil {
		return fmt.Errorf("follow %s: %w", topic, err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return nil
		}
		fs.EachRecord(func(rec *kgo.Record) {
			var r schemas.Review
			if err := json.Unmarshal(rec.Value, &r); err != nil || r.ID == "" {
				q.log.Warn("undecodable review item skipped", "topic", topic, "offset", rec.Offset, "err", err)
				return
			}
			q.Add(r)
		})
	}
}
