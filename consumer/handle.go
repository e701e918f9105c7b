package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/schemas"
)

// item is one input record on its way to exactly one output record.
type item struct {
	rec    *kgo.Record
	input  schemas.Input
	route  Predictor
	reason string // dead-letter reason code; "" while the item is healthy
	detail string
	pred   inference.Prediction
}

func (it *item) fail(code, detail string) { it.reason, it.detail = code, detail }

// validate checks one record, in the order that gives the most specific
// reason: bytes, JSON, schema, then text rules.
func (c *Consumer) validate(it *item) {
	route, ok := c.cfg.Routes[it.rec.Topic]
	if !ok {
		it.fail(schemas.ReasonUnknownRoute, fmt.Sprintf("no model is routed for topic %q", it.rec.Topic))
		return
	}
	it.route = route
	if !utf8.Valid(it.rec.Value) {
		// Checked on raw bytes: encoding/json would silently replace them.
		it.fail(schemas.ReasonInvalidUTF8, "record value is not valid UTF-8")
		return
	}
	in, err := schemas.DecodeInput(it.rec.Value)
	switch {
	case errors.Is(err, schemas.ErrInvalidJSON):
		it.fail(schemas.ReasonInvalidJSON, err.Error())
		return
	case err != nil:
		it.fail(schemas.ReasonSchemaViolation, err.Error())
		return
	}
	it.input = in
	switch {
	case strings.TrimSpace(in.Text) == "":
		it.fail(schemas.ReasonEmptyText, "text is empty or whitespace only")
	case len(in.Text) > c.cfg.MaxTextBytes:
		it.fail(schemas.ReasonTextTooLong, fmt.Sprintf("text is %d bytes, the limit is %d", len(in.Text), c.cfg.MaxTextBytes))
	}
}

// handle turns one polled batch into outputs inside one transaction.
func (c *Consumer) handle(ctx context.Context, s session, recs []*kgo.Record) error {
	c.metrics.inflight.Set(float64(len(recs)))
	defer c.metrics.inflight.Set(0)
	items := make([]item, len(recs))
	for i, r := range recs {
		items[i].rec = r
		c.validate(&items[i])
	}
	release := pin(items)
	defer release()
	c.classify(ctx, items)

	if err := s.begin(); err != nil {
		return &fatalError{fmt.Errorf("begin transaction: %w", err)}
	}
	var (
		mu      sync.Mutex
		prodErr error
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			prodErr = firstErr(prodErr, err)
			mu.Unlock()
		}
	}
	now := time.Now()
	for i := range items {
		var p schemas.Prediction
		if items[i].reason == "" {
			p = prediction(&items[i], now)
		}
		out, err := c.output(&items[i], p, now)
		if err != nil { // encoding our own types cannot fail; treat as a bug, not data
			return &fatalError{err}
		}
		s.produce(ctx, out, promise)
		if items[i].reason == "" {
			rv, err := c.review.record(&items[i], p, now)
			if err != nil {
				return &fatalError{err}
			}
			if rv != nil {
				s.produce(ctx, rv, promise)
				c.metrics.reviewOffered.Inc()
			}
		}
	}
	// Flush first so a failed output aborts the transaction instead of
	// committing offsets for an input whose output was lost.
	flushErr := s.client().Flush(ctx)
	mu.Lock()
	perr := firstErr(prodErr, flushErr)
	mu.Unlock()
	committed, err := s.end(ctx, perr == nil && ctx.Err() == nil, recs)
	switch {
	case err != nil:
		c.metrics.transactions.WithLabelValues("error").Inc()
		if c.cfg.Delivery == ExactlyOnce && !errors.Is(err, kerr.UnknownTopicID) {
			// End's errors are not retryable: the transactional ID is fenced or failed.
			return &fatalError{fmt.Errorf("end transaction: %w", err)}
		}
		return fmt.Errorf("end transaction: %w", err)
	case perr != nil && !committed:
		c.metrics.transactions.WithLabelValues("aborted").Inc()
		return fmt.Errorf("produce outputs: %w", perr)
	case !committed:
		// A rebalance moved partitions away mid-batch; the new owner (or we,
		// after rewinding) will process these records again.
		c.metrics.transactions.WithLabelValues("aborted").Inc()
		c.log.Info("batch aborted by rebalance or shutdown; it will be consumed again", "records", len(recs))
		return nil
	}
	c.metrics.transactions.WithLabelValues("committed").Inc()
	for i := range items {
		it := &items[i]
		if it.reason != "" {
			c.metrics.records.WithLabelValues(it.rec.Topic, "dead_letter").Inc()
			c.metrics.deadLetters.WithLabelValues(it.reason).Inc()
			// One line per dead letter, in the shape the logs dashboard
			// counts by reason; the record itself is on the dead-letter topic.
			c.log.Warn("dead letter", "event.action", "dead-letter", "event.reason", it.reason, "topic", it.rec.Topic,
				"partition", it.rec.Partition, "offset", it.rec.Offset)
			continue
		}
		c.metrics.records.WithLabelValues(it.rec.Topic, "predicted").Inc()
		if !it.rec.Timestamp.IsZero() {
			c.metrics.latency.Observe(now.Sub(it.rec.Timestamp).Seconds())
		}
		if it.pred.Truncated {
			c.metrics.truncated.Inc()
		}
	}
	return nil
}

// pin resolves every swappable route of the batch to the version serving
// now, held until the returned func is called (after the transaction ends):
// one transaction, one version per model. A route with no version loaded
// dead-letters its items with the reason rather than failing the batch.
func pin(items []item) (release func()) {
	type pinned struct {
		p   Predictor
		err error
	}
	pins := map[inference.Swappable]pinned{}
	var releases []func()
	for i := range items {
		it := &items[i]
		sw, ok := it.route.(inference.Swappable)
		if it.reason != "" || !ok {
			continue
		}
		pn, seen := pins[sw]
		if !seen {
			p, rel, err := sw.Pin()
			pn = pinned{p, err}
			pins[sw] = pn
			if err == nil {
				releases = append(releases, rel)
			}
		}
		if pn.err != nil {
			it.fail(schemas.ReasonModelError, pn.err.Error())
			continue
		}
		it.route = pn.p
	}
	return func() {
		for _, r := range releases {
			r()
		}
	}
}

func firstErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// classify runs healthy items through their route's model in micro-batches
// of at most Batch.MaxCount, keeping input order. A failing batch is
// retried one record at a time so one bad record never fails the others.
func (c *Consumer) classify(ctx context.Context, items []item) {
	byRoute := map[Predictor][]*item{}
	var order []Predictor
	for i := range items {
		it := &items[i]
		if it.reason != "" {
			continue
		}
		if _, ok := byRoute[it.route]; !ok {
			order = append(order, it.route)
		}
		byRoute[it.route] = append(byRoute[it.route], it)
	}
	for _, p := range order {
		its := byRoute[p]
		for lo := 0; lo < len(its); lo += c.cfg.Batch.MaxCount {
			batch := its[lo:min(lo+c.cfg.Batch.MaxCount, len(its))]
			if err := c.predict(ctx, p, batch); err != nil {
				c.log.Warn("batch inference failed; retrying records one by one", "records", len(batch), "err", err)
				for _, it := range batch {
					if err := c.predict(ctx, p, []*item{it}); err != nil {
						it.fail(schemas.ReasonModelError, err.Error())
					}
				}
			}
		}
	}
}

func (c *Consumer) predict(ctx context.Context, p Predictor, batch []*item) error {
	texts := make([]string, len(batch))
	for i, it := range batch {
		texts[i] = it.input.Text
	}
	start := time.Now()
	preds, err := p.Predict(ctx, texts)
	if err != nil {
		return err
	}
	if len(preds) != len(batch) {
		return fmt.Errorf("model returned %d predictions for %d texts", len(preds), len(batch))
	}
	c.metrics.inference.Observe(time.Since(start).Seconds())
	c.metrics.batchRecords.Observe(float64(len(batch)))
	for i, it := range batch {
		it.pred = preds[i]
	}
	return nil
}
