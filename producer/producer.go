// Package producer sends texts to a Kafka input topic as schemas.Input JSON
// records keyed by id: from a CSV/JSONL file, synthetic traffic or lines of
// stdin, at a target rate, optionally mixed with malformed records to
// exercise the consumer's dead-letter path.
//
// The client is idempotent (franz-go's default) with acks=all, produces
// asynchronously with a bounded number of records in flight, and flushes at
// the end: a run either reports every record acked or counts the failures
// and returns the first.
package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/triage-ml/triage/schemas"
)

// ClientID is the Kafka client id of the producer.
const ClientID = "triage-producer"

// Config of a Producer. Brokers and Topic are required.
type Config struct {
	Brokers []string
	Topic   string

	// Rate is the target records per second; 0 sends as fast as the broker
	// acknowledges (bounded by MaxInFlight).
	Rate float64
	// Count stops a run after this many records; 0 runs until the source
	// ends (or ctx, for an endless source).
	Count int
	// BadRatio in [0, 1] is the fraction of records replaced by malformed
	// ones (see BadKinds): exactly floor(n*BadRatio) of the first n,
	// evenly spread, cycling through the kinds.
	BadRatio float64
	// IDPrefix names records whose Message has no id: <IDPrefix>-<n>.
	// Default "triage".
	IDPrefix string
	// Source, when set, is the schemas.Input source of every record,
	// overriding the one the Source gives.
	Source string

	// MaxInFlight bounds the records buffered or awaiting acks
	// (kgo.MaxBufferedRecords); Produce blocks beyond it. Default 10000.
	MaxInFlight int
	// DeliveryTimeout fails a record not acked in this long
	// (kgo.RecordDeliveryTimeout). Default 1m.
	DeliveryTimeout time.Duration
	// FlushTimeout bounds the flush of records already handed to the
	// client after ctx ends. Default 10s.
	FlushTimeout time.Duration

	// Progress, if set, gets a snapshot every ProgressInterval (default 1s)
	// and once more when the run ends.
	Progress         func(Stats)
	ProgressInterval time.Duration
	// OnDelivery, if set, is called once per produced record with its
	// result (partition and offset set on success). Calls are serial and
	// must not block.
	OnDelivery func(r *kgo.Record, err error)

	// ClientOpts are extra franz-go options (TLS, SASL, logging), applied
	// after the producer's own.
	ClientOpts []kgo.Opt

	now func() time.Time // tests
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("no brokers"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("no topic"))
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate %v: must be >= 0 (0 = unlimited)", c.Rate))
	}
	if c.Count < 0 {
		errs = append(errs, fmt.Errorf("count %d: must be >= 0 (0 = until the source ends)", c.Count))
	}
	if !(c.BadRatio >= 0 && c.BadRatio <= 1) {
		errs = append(errs, fmt.Errorf("bad ratio %v: must be in [0, 1]", c.BadRatio))
	}
	if c.MaxInFlight < 0 || c.DeliveryTimeout < 0 || c.FlushTimeout < 0 || c.ProgressInterval < 0 {
		errs = append(errs, errors.New("max in-flight and timeouts must be >= 0"))
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 10000
	}
	if c.DeliveryTimeout == 0 {
		c.DeliveryTimeout = time.Minute
	}
	if c.FlushTimeout == 0 {
		c.FlushTimeout = 10 * time.Second
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = time.Second
	}
	if c.IDPrefix == "" {
		c.IDPrefix = "triage"
	}
	if c.now == nil {
		c.now = time.Now
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	return nil
}

// Stats of one run.
type Stats struct {
	Topic     string           `json:"topic"`
	Sent      int64            `json:"sent"`   // records handed to the client
	Acked     int64            `json:"acked"`  // records the broker acknowledged
	Failed    int64            `json:"failed"` // records that failed for good
	Malformed map[string]int64 `json:"malformed,omitempty"`
	// Bytes is the total size of the record values sent.
	Bytes    int64         `json:"bytes"`
	Elapsed  time.Duration `json:"-"`
	ElapsedS float64       `json:"elapsed_s"` // Elapsed in seconds, for JSON
	// Rate is acked records per second of Elapsed.
	Rate float64 `json:"rate"`
	// Interrupted says ctx ended the run before the count or the source.
	Interrupted bool `json:"interrupted,omitempty"`
}

// MalformedTotal is the number of malformed records sent.
func (s Stats) MalformedTotal() int64 {
	var n int64
	for _, v := range s.Malformed {
		n += v
	}
	return n
}

// Producer sends messages to one topic. It is safe to Run several times in
// sequence (ids restart at 1 each run), not concurrently.
type Producer struct {
	cfg    Config
	client *kgo.Client
}

// New creates the Kafka client; it does not contact the brokers yet.
func New(cfg Config) (*Producer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(ClientID),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), // required by, and the default of, idempotent producing
		kgo.MaxBufferedRecords(cfg.MaxInFlight),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout),
	}
	cl, err := kgo.NewClient(append(opts, cfg.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	return &Producer{cfg: cfg, client: cl}, nil
}

// Close closes the client; records still buffered are failed.
func (p *Producer) Close() { p.client.Close() }

// Client is the underlying franz-go client.
func (p *Producer) Client() *kgo.Client { return p.client }

// Run sends messages from src until the source ends, Count records were
// sent, or ctx ends; then it flushes and waits for every ack. When ctx
// ends it stops sending and flushes what was already sent (for at most
// FlushTimeout), returning ctx.Err() with Stats.Interrupted set unless a
// record failed. A failed record does not stop the run: failures are
// counted and the first is returned, wrapped with the count.
func (p *Producer) Run(ctx context.Context, src Source) (Stats, error) {
	cfg := p.cfg
	r := &run{cfg: cfg, start: cfg.now(), malformed: map[string]int64{}}

	// Records live on a context of their own, so ending ctx does not fail
	// records already handed to the client; it is cancelled FlushTimeout
	// after ctx ends, or when the run returns.
	recCtx, cancelRecs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRecs()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-ctx.Done():
			t := time.NewTimer(cfg.FlushTimeout)
			defer t.Stop()
			select {
			case <-done:
			case <-t.C:
				cancelRecs()
			}
		}
	}()

	stopProgress := func() {}
	if cfg.Progress != nil {
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			t := time.NewTicker(cfg.ProgressInterval)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					cfg.Progress(r.snapshot())
				}
			}
		}()
		var once sync.Once
		stopProgress = func() { once.Do(func() { close(stop); <-stopped }) }
		defer stopProgress()
	}

	var lim *rate.Limiter
	if cfg.Rate > 0 {
		// A burst of 10 ms worth of records keeps the per-record wait
		// cheap at high rates without bunching at low ones.
		lim = rate.NewLimiter(rate.Limit(cfg.Rate), max(1, int(cfg.Rate/100)))
	}
	bad := badSchedule{ratio: cfg.BadRatio, kinds: BadKinds()}
	var srcErr error
	for n := 1; cfg.Count == 0 || n <= cfg.Count; n++ {
		if ctx.Err() != nil {
			break
		}
		msg, err := src.Next(ctx)
		if err != nil {
			if !errors.Is(err, io.EOF) && ctx.Err() == nil {
				srcErr = fmt.Errorf("producer: source: %w", err)
			}
			break
		}
		if lim != nil {
			if err := lim.Wait(ctx); err != nil {
				// ctx ended, or its deadline comes before the next
				// token: then the run ends at the deadline, not now.
				<-ctx.Done()
				break
			}
		}
		rec := p.record(r, n, msg, bad)
		rec.Context = recCtx
		r.sent.Add(1)
		r.bytes.Add(int64(len(rec.Value)))
		// ctx (not recCtx) bounds only the wait for buffer space.
		p.client.Produce(ctx, rec, func(rec *kgo.Record, err error) { r.promise(ctx, recCtx, rec, err) })
	}
	flushErr := p.client.Flush(recCtx)

	st := r.snapshot()
	st.Interrupted = ctx.Err() != nil
	stopProgress() // the final call below must not overlap a tick
	if cfg.Progress != nil {
		cfg.Progress(st)
	}
	r.mu.Lock()
	first := r.firstErr
	r.mu.Unlock()
	switch {
	case first != nil:
		return st, fmt.Errorf("producer: %d of %d records failed; first: %w", st.Failed, st.Sent, first)
	case srcErr != nil:
		return st, srcErr
	case flushErr != nil && ctx.Err() == nil:
		return st, fmt.Errorf("producer: flush: %w", flushErr)
	case ctx.Err() != nil:
		return st, ctx.Err()
	}
	return st, nil
}

// record builds the n-th record of a run: the message as schemas.Input, or
// a malformed record when the schedule says so.
func (p *Producer) record(r *run, n int, msg Message, bad badSchedule) *kgo.Record {
	id := msg.ID
	if id == "" {
		id = p.cfg.IDPrefix + "-" + strconv.Itoa(n)
	}
	rec := &kgo.Record{Key: []byte(id)}
	if kind, ok := bad.kind(n); ok {
		rec.Value = malformed(kind, id, msg.Text)
		rec.Headers = []kgo.RecordHeader{{Key: HeaderMalformed, Value: []byte(kind)}}
		r.mu.Lock()
		r.malformed[kind]++
		r.mu.Unlock()
		return rec
	}
	now := p.cfg.now().UTC().Truncate(time.Millisecond)
	in := schemas.Input{ID: id, Text: msg.Text, Source: msg.Source, CreatedAt: &now, Metadata: msg.Metadata}
	if p.cfg.Source != "" {
		in.Source = p.cfg.Source
	}
	v, err := json.Marshal(in)
	if err != nil { // metadata comes from our own sources: strings and numbers
		panic(fmt.Sprintf("producer: encode input: %v", err))
	}
	rec.Value = v
	return rec
}

// run is the shared state of one Run, updated by promises.
type run struct {
	cfg                 Config
	start               time.Time
	sent, acked, failed atomic.Int64
	bytes               atomic.Int64
	mu                  sync.Mutex
	firstErr            error
	malformed           map[string]int64
}

func (r *run) promise(ctx, recCtx context.Context, rec *kgo.Record, err error) {
	if r.cfg.OnDelivery != nil {
		r.cfg.OnDelivery(rec, err)
	}
	switch {
	case err == nil:
		r.acked.Add(1)
	case recCtx.Err() == nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		// ctx ended while Produce waited for buffer space: never sent.
		r.sent.Add(-1)
		r.bytes.Add(-int64(len(rec.Value)))
	default:
		r.failed.Add(1)
		r.mu.Lock()
		if r.firstErr == nil {
			r.firstErr = fmt.Errorf("record %s: %w", rec.Key, err)
		}
		r.mu.Unlock()
	}
}

func (r *run) snapshot() Stats {
	st := Stats{
		Topic:   r.cfg.Topic,
		Sent:    r.sent.Load(),
		Acked:   r.acked.Load(),
		Failed:  r.failed.Load(),
		Bytes:   r.bytes.Load(),
		Elapsed: r.cfg.now().Sub(r.start),
	}
	r.mu.Lock()
	if len(r.malformed) > 0 {
		st.Malformed = make(map[string]int64, len(r.malformed))
		for k, v := range r.malformed {
			st.Malformed[k] = v
		}
	}
	r.mu.Unlock()
	st.ElapsedS = math.Round(st.Elapsed.Seconds()*1000) / 1000
	if s := st.Elapsed.Seconds(); s > 0 {
		st.Rate = math.Round(float64(st.Acked)/s*10) / 10
	}
	return st
}

// Run is New, Run and Close in one call.
func Run(ctx context.Context, cfg Config, src Source) (Stats, error) {
	p, err := New(cfg)
	if err != nil {
		return Stats{}, err
	}
	defer p.Close()
	return p.Run(ctx, src)
}
