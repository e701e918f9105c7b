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
	idx    int       // position in the batch
	at     time.Time // when its output was made
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
	in, err := decodeInput(it.rec.Value)
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
//
// The batch's micro-batches are pipelined: featurise(k+1) ‖ infer(k) ‖
// encode(k-1), then every output is produced in one short transaction.
// This is exactly-once safe because it only reorders CPU work on records
// already polled for this transaction; End still commits their outputs
// and offsets together, and an abort discards nothing but this batch,
// which franz-go rewinds and we poll again. Polling the next batch is NOT
// overlapped: End commits the client's uncommitted offsets, i.e.
// everything polled so far, so records polled while a transaction is open
// would be committed without their outputs.
func (c *Consumer) handle(ctx context.Context, s session, recs []*kgo.Record) error {
	c.metrics.inflight.Set(float64(len(recs)))
	defer c.metrics.inflight.Set(0)
	items := c.itemsFor(recs)
	c.validateAll(items)
	release := pin(items)
	defer release()

	// Outputs are encoded in input order as soon as a prefix of items is
	// classified, on another goroutine, so the order on every output topic
	// is what a one-step-at-a-time loop would give.
	arena := c.takeArena(len(items))
	settled := make([]bool, len(items))
	for i := range items {
		settled[i] = items[i].reason != "" // failed before classification
	}
	done := make(chan []*item, 4)
	encErr := make(chan error, 1)
	go func() { encErr <- c.emit(items, settled, arena, done) }()
	c.classify(ctx, items, done)
	close(done)
	if err := <-encErr; err != nil { // encoding our own types cannot fail; treat as a bug, not data
		return &fatalError{err}
	}

	// The transaction begins only now: producing while the model runs
	// would keep it open for the whole classification, and a slow model
	// could then outlast TransactionTimeout and be fenced.
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
	for _, r := range arena.outs {
		s.produce(ctx, r, promise)
	}
	// Flush first so a failed output aborts the transaction instead of
	// committing offsets for an input whose output was lost.
	flushErr := s.flush(ctx)
	mu.Lock()
	perr := firstErr(prodErr, flushErr)
	mu.Unlock()
	committed, err := s.end(ctx, perr == nil && ctx.Err() == nil, recs)
	if err == nil && flushErr == nil {
		// Every promise has fired: the records' buffers may be reused.
		c.arena = arena
	}
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
			c.metrics.latency.Observe(it.at.Sub(it.rec.Timestamp).Seconds())
		}
		if it.pred.Truncated {
			c.metrics.truncated.Inc()
		}
		if it.pred.Abstained {
			c.metrics.abstained.WithLabelValues(it.rec.Topic).Inc()
		}
	}
	return nil
}

// itemsFor returns the batch's items in a slice reused across batches
// (handle runs one batch at a time).
func (c *Consumer) itemsFor(recs []*kgo.Record) []item {
	if cap(c.items) < len(recs) {
		c.items = make([]item, len(recs))
	}
	items := c.items[:len(recs)]
	clear(items)
	for i, r := range recs {
		items[i].rec, items[i].idx = r, i
	}
	return items
}

// validateAll validates items, split over two goroutines for large
// batches: each item is independent, and decoding is a fair share of
// the consumer's CPU.
func (c *Consumer) validateAll(items []item) {
	if len(items) < 128 {
		for i := range items {
			c.validate(&items[i])
		}
		return
	}
	half := len(items) / 2
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range items[:half] {
			c.validate(&items[i])
		}
	})
	for i := half; i < len(items); i++ {
		c.validate(&items[i])
	}
	wg.Wait()
}

// emit encodes each item's outputs into a.outs in input order: an item
// goes once it and every item before it are settled (dead-lettered before
// classification, or in a micro-batch received on done).
func (c *Consumer) emit(items []item, settled []bool, a *arena, done <-chan []*item) error {
	next := 0
	var err error
	encode := func() {
		now := time.Now()
		for ; next < len(items) && settled[next] && err == nil; next++ {
			err = c.emitOne(&items[next], a, now)
		}
	}
	encode()
	for batch := range done {
		for _, it := range batch {
			settled[it.idx] = true
		}
		encode()
	}
	return err
}

func (c *Consumer) emitOne(it *item, a *arena, now time.Time) error {
	it.at = now
	if it.reason != "" {
		out, err := c.deadLetter(it, now)
		if err != nil {
			return err
		}
		a.outs = append(a.outs, out)
		return nil
	}
	p := a.prediction(it, now)
	out, err := c.predictionRecord(a, it, p)
	if err != nil {
		return err
	}
	a.outs = append(a.outs, out)
	rv, err := c.review.record(it, *p, now)
	if err != nil {
		return err
	}
	if rv != nil {
		a.outs = append(a.outs, rv)
		c.metrics.reviewOffered.Inc()
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

// stagedPredictor splits Predict into featurisation and the ONNX Runtime
// call (*inference.Model does), so the two can overlap across micro-batches.
type stagedPredictor interface {
	TransformAllTo(dst []inference.Input, texts []string) []inference.Input
	PredictInputs(ctx context.Context, ins []inference.Input) ([]inference.Prediction, error)
}

// classify runs healthy items through their route's model in micro-batches
// of at most Batch.MaxCount, keeping input order, and sends each finished
// micro-batch on done. A failing batch is retried one record at a time so
// one bad record never fails the others.
func (c *Consumer) classify(ctx context.Context, items []item, done chan<- []*item) {
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
		var batches [][]*item
		for lo := 0; lo < len(its); lo += c.cfg.Batch.MaxCount {
			batches = append(batches, its[lo:min(lo+c.cfg.Batch.MaxCount, len(its))])
		}
		sp, staged := p.(stagedPredictor)
		if !staged || len(batches) == 1 {
			for _, b := range batches {
				c.predictOrRetry(ctx, p, b, nil, 0)
				done <- b
			}
			continue
		}
		// Featurise the next micro-batch on another goroutine while ONNX
		// Runtime runs this one; it is pure CPU work on the texts alone.
		type featurised struct {
			ins  []inference.Input
			took time.Duration
		}
		ahead := make(chan featurised, 1)
		go func() {
			defer close(ahead)
			var texts []string
			for k, b := range batches {
				texts = texts[:0]
				for _, it := range b {
					texts = append(texts, it.input.Text)
				}
				start := time.Now()
				// At most three batches are live (one being predicted, one
				// in ahead, this one), so three reused slots never collide.
				slot := &c.inputs[k%len(c.inputs)]
				*slot = sp.TransformAllTo(*slot, texts)
				ahead <- featurised{*slot, time.Since(start)}
			}
		}()
		for _, b := range batches {
			f := <-ahead
			c.predictOrRetry(ctx, p, b, f.ins, f.took)
			done <- b
		}
	}
}

// predictOrRetry predicts one micro-batch (from ins when featurised
// already) and falls back to one record at a time when it fails.
func (c *Consumer) predictOrRetry(ctx context.Context, p Predictor, batch []*item, ins []inference.Input, took time.Duration) {
	var err error
	if ins != nil {
		err = c.predictInputs(ctx, p.(stagedPredictor), batch, ins, took)
	} else {
		err = c.predict(ctx, p, batch)
	}
	if err != nil {
		c.log.Warn("batch inference failed; retrying records one by one", "records", len(batch), "err", err)
		for _, it := range batch {
			if err := c.predict(ctx, p, []*item{it}); err != nil {
				it.fail(schemas.ReasonModelError, err.Error())
			}
		}
	}
}

func (c *Consumer) predictInputs(ctx context.Context, p stagedPredictor, batch []*item, ins []inference.Input, took time.Duration) error {
	start := time.Now()
	preds, err := p.PredictInputs(ctx, ins)
	if err != nil {
		return err
	}
	return c.setPreds(batch, preds, took+time.Since(start))
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
	return c.setPreds(batch, preds, time.Since(start))
}

func (c *Consumer) setPreds(batch []*item, preds []inference.Prediction, took time.Duration) error {
	if len(preds) != len(batch) {
		return fmt.Errorf("model returned %d predictions for %d texts", len(preds), len(batch))
	}
	c.metrics.inference.Observe(took.Seconds())
	c.metrics.batchRecords.Observe(float64(len(batch)))
	for i, it := range batch {
		it.pred = preds[i]
	}
	return nil
}
