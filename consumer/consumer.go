// Package consumer is Triage's streaming role: it reads texts from Kafka
// input topics in a consumer group, classifies them in micro-batches with
// the model routed to each topic, and publishes one prediction per input —
// or one dead letter with a reason — in the same Kafka transaction that
// commits the input offsets, so every input yields exactly one output.
package consumer

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/triage-ml/triage/internal/kafkalog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/batch"
	"github.com/triage-ml/triage/inference"
)

// Predictor classifies texts; *inference.Model is one. A route that also
// implements inference.Swappable (the serving set's) is pinned once per
// transaction, so hot swaps happen between transactions, never inside one.
type Predictor = inference.Predictor

// Delivery guarantees.
const (
	ExactlyOnce = "exactly-once"
	AtLeastOnce = "at-least-once"
)

// Config configures a consumer. Zero values take the defaults noted.
type Config struct {
	Brokers          []string
	Group            string               // default "triage-consumer"
	Routes           map[string]Predictor // input topic -> model
	PredictionsTopic string               // default "triage.predictions"
	DeadLetterTopic  string               // default "triage.dead-letters"
	Delivery         string               // ExactlyOnce (default) or AtLeastOnce
	// InstanceID, when set, must be stable across restarts of one consumer
	// and unique among running ones (a StatefulSet pod name). It makes the
	// group membership static and the transactional ID stable, so a
	// restarted consumer takes its partitions straight back and fences its
	// crashed predecessor's open transaction instead of waiting for
	// timeouts.
	InstanceID string
	// TransactionalID must be unique per running consumer process; default
	// is group-InstanceID, or group-host-pid without an InstanceID.
	TransactionalID string
	// SessionTimeout bounds how long a crashed member holds its partitions;
	// default 10s.
	SessionTimeout time.Duration
	// TransactionTimeout bounds how long a crashed producer's open
	// transaction blocks its partitions; default 10s (a batch must finish
	// well within it).
	TransactionTimeout time.Duration
	// Batch is the micro-batch policy (default batch.Default()). The
	// consumer counts records, not tokens: MaxCount must be set and
	// MaxTokens left 0.
	Batch batch.Policy
	// Review offers uncertain predictions for human labelling (active
	// learning); an empty Topic turns it off.
	Review          ReviewPolicy
	MaxPollRecords  int // records per transaction at most; default 5000
	MaxTextBytes    int // hard limit; longer texts are dead-lettered; default 64 KiB
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	Registerer      prometheus.Registerer
	// ClientOpts are appended to the Kafka client options (tests, TLS, SASL).
	ClientOpts []kgo.Opt
}

// Defaults, shared by RegisterFlags and Validate (one place each).
const (
	DefaultGroup            = "triage-consumer"
	DefaultPredictionsTopic = "triage.predictions"
	DefaultDeadLetterTopic  = "triage.dead-letters"
	// Each transaction costs a few broker round trips (add offsets, end,
	// commit markers) during which nothing is classified: 5000 records per
	// transaction measured +68% msgs/s for the linear model over 1000
	// (docs/benchmarks.md). Lower it for slow encoder routes so one poll's
	// work stays short of the group's rebalance timeout.
	DefaultMaxPollRecords = 5000
	DefaultMaxTextBytes   = 64 << 10
)

// RegisterFlags binds the consumer's settings to flags with their
// defaults. Brokers and routes are the composition's (shared with other
// roles, and mapped to models there).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Group, "group", DefaultGroup, "Kafka consumer group")
	fs.StringVar(&c.InstanceID, "instance-id", "", "stable id of this consumer across restarts (e.g. the pod name): static group membership and a stable transactional id, for fast recovery")
	fs.StringVar(&c.PredictionsTopic, "predictions-topic", DefaultPredictionsTopic, "topic predictions are published to")
	fs.StringVar(&c.DeadLetterTopic, "dead-letter-topic", DefaultDeadLetterTopic, "topic rejected inputs are published to, with the reason")
	fs.StringVar(&c.Delivery, "delivery", ExactlyOnce, "exactly-once (Kafka transactions) or at-least-once")
	// Count and wait only: records are batched before they are tokenised,
	// so a token limit applies inside inference, not here.
	c.Batch = batch.Default()
	fs.IntVar(&c.Batch.MaxCount, "batch-max", c.Batch.MaxCount, "most texts per inference micro-batch")
	fs.DurationVar(&c.Batch.MaxWait, "batch-wait", c.Batch.MaxWait, "longest wait to fill a micro-batch after its first record")
	fs.IntVar(&c.MaxPollRecords, "max-poll-records", DefaultMaxPollRecords, "most records per transaction")
	fs.IntVar(&c.MaxTextBytes, "max-text-bytes", DefaultMaxTextBytes, "texts longer than this are dead-lettered (text_too_long)")
	fs.StringVar(&c.Review.Topic, "review-topic", DefaultReviewTopic, `topic uncertain predictions are offered on for human labelling ("" disables)`)
	fs.Float64Var(&c.Review.MaxMargin, "review-margin", DefaultReviewMargin, "a prediction is uncertain when its top-2 probability margin is below this")
	fs.Float64Var(&c.Review.Rate, "review-rate", DefaultReviewRate, "most uncertain predictions offered per second (a sample, not all of them)")
	fs.BoolVar(&c.Review.Abstained, "review-abstained", true, "also route every abstained (out-of-scope) prediction to the review topic, unsampled")
}

// Validate fills defaults and reports every problem with what to change.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one Kafka bootstrap address is required (--brokers)"))
	}
	if len(c.Routes) == 0 {
		errs = append(errs, errors.New("routes: map at least one input topic to a model (--route topic=MODEL)"))
	}
	for t, p := range c.Routes {
		if t == "" || p == nil {
			errs = append(errs, fmt.Errorf("route %q: topic and model are required", t))
		}
	}
	c.Group = cmp.Or(c.Group, DefaultGroup)
	c.PredictionsTopic = cmp.Or(c.PredictionsTopic, DefaultPredictionsTopic)
	c.DeadLetterTopic = cmp.Or(c.DeadLetterTopic, DefaultDeadLetterTopic)
	if _, ok := c.Routes[c.PredictionsTopic]; ok {
		errs = append(errs, fmt.Errorf("predictions topic %q is also an input topic", c.PredictionsTopic))
	}
	if _, ok := c.Routes[c.DeadLetterTopic]; ok {
		errs = append(errs, fmt.Errorf("dead-letter topic %q is also an input topic", c.DeadLetterTopic))
	}
	c.Delivery = cmp.Or(c.Delivery, ExactlyOnce)
	if c.Delivery != ExactlyOnce && c.Delivery != AtLeastOnce {
		errs = append(errs, fmt.Errorf("delivery %q: use %q or %q", c.Delivery, ExactlyOnce, AtLeastOnce))
	}
	if c.TransactionalID == "" {
		if c.InstanceID != "" {
			c.TransactionalID = c.Group + "-" + c.InstanceID
		} else {
			host, _ := os.Hostname()
			c.TransactionalID = fmt.Sprintf("%s-%s-%d", c.Group, cmp.Or(host, "host"), os.Getpid())
		}
	}
	c.SessionTimeout = cmp.Or(c.SessionTimeout, 10*time.Second)
	c.TransactionTimeout = cmp.Or(c.TransactionTimeout, 10*time.Second)
	if c.SessionTimeout < time.Second || c.TransactionTimeout < time.Second {
		errs = append(errs, errors.New("session and transaction timeouts must be at least 1s"))
	}
	if c.Batch == (batch.Policy{}) {
		c.Batch = batch.Default()
	}
	if err := checkBatch(c.Batch); err != nil {
		errs = append(errs, err)
	}
	c.MaxPollRecords = cmp.Or(c.MaxPollRecords, DefaultMaxPollRecords)
	if c.MaxPollRecords < c.Batch.MaxCount {
		c.MaxPollRecords = c.Batch.MaxCount
	}
	c.MaxTextBytes = cmp.Or(c.MaxTextBytes, DefaultMaxTextBytes)
	if c.Review.Topic != "" {
		if c.Review.MaxMargin <= 0 || c.Review.MaxMargin > 1 || c.Review.Rate <= 0 {
			errs = append(errs, fmt.Errorf("review margin %v must be in (0,1] and rate %v > 0 (--review-margin, --review-rate)", c.Review.MaxMargin, c.Review.Rate))
		}
		if _, ok := c.Routes[c.Review.Topic]; ok {
			errs = append(errs, fmt.Errorf("review topic %q is also an input topic", c.Review.Topic))
		}
	}
	if c.MaxTextBytes < 1 {
		errs = append(errs, fmt.Errorf("max text bytes %d: must be >= 1", c.MaxTextBytes))
	}
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 15*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return errors.Join(errs...)
}

// Consumer runs the classify loop.
type Consumer struct {
	cfg     Config
	review  *reviewer // nil when no review topic
	metrics *metrics
	log     *slog.Logger
	topics  []string

	// Reused across batches by handle, which runs one batch at a time.
	items  []item
	arena  *arena               // nil while a transaction holds it
	inputs [3][]inference.Input // featurisation buffers cycled by classify

	mu    sync.Mutex
	ready bool
}

// New validates cfg and registers metrics; Run starts consuming.
func New(cfg Config) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("consumer config: %w", err)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("consumer metrics: %w", err)
	}
	topics := slices.Sorted(maps.Keys(cfg.Routes))
	for _, t := range topics {
		m.abstained.WithLabelValues(t) // exported as 0 before the first abstention
	}
	return &Consumer{cfg: cfg, metrics: m, log: cfg.Logger.With("role", "consumer"), topics: topics, review: newReviewer(cfg.Review)}, nil
}

// Ready reports whether the consumer has connected and joined its group.
func (c *Consumer) Ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

func (c *Consumer) setReady(v bool) {
	c.mu.Lock()
	c.ready = v
	c.mu.Unlock()
}

func (c *Consumer) clientOpts() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.cfg.Brokers...),
		kgo.ConsumerGroup(c.cfg.Group),
		kgo.ConsumeTopics(c.topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.AllowAutoTopicCreation(),
		kgo.ClientID("triage-consumer"),
		// Bounded buffering: the client holds at most this many bytes of
		// fetched-but-unpolled data, so a slow model applies backpressure
		// to Kafka instead of growing memory.
		kgo.FetchMaxBytes(16 << 20),
		kgo.FetchMaxPartitionBytes(4 << 20),
		kgo.MaxConcurrentFetches(4),
		kgo.WithLogger(kafkalog.New(c.log)),
		kgo.SessionTimeout(c.cfg.SessionTimeout),
	}
	if c.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(c.cfg.InstanceID))
	}
	if c.cfg.Delivery == ExactlyOnce {
		opts = append(opts,
			kgo.TransactionalID(c.cfg.TransactionalID),
			kgo.TransactionTimeout(c.cfg.TransactionTimeout),
			kgo.RequireStableFetchOffsets(),
		)
	} else {
		opts = append(opts, kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll())
	}
	return append(opts, c.cfg.ClientOpts...)
}

// Run consumes until ctx is cancelled, then stops polling, finishes and
// commits the batch in hand, leaves the group and returns nil. Any other
// return is a fatal error.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.setReady(false)
	if c.cfg.Delivery == ExactlyOnce {
		return c.runTransactional(ctx)
	}
	return c.runAtLeastOnce(ctx)
}

// session abstracts the two delivery modes for the shared batch loop.
type session interface {
	poll(ctx context.Context, max int) kgo.Fetches
	begin() error
	produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	// end commits (or aborts when commit is false); committed reports
	// whether the outputs and offsets became visible together.
	end(ctx context.Context, commit bool, polled []*kgo.Record) (committed bool, err error)
	// flush waits for every produced record's promise.
	flush(ctx context.Context) error
	client() *kgo.Client
	close()
}

type txnSession struct{ s *kgo.GroupTransactSession }

func (t txnSession) poll(ctx context.Context, max int) kgo.Fetches { return t.s.PollRecords(ctx, max) }
func (t txnSession) begin() error                                  { return t.s.Begin() }
func (t txnSession) produce(ctx context.Context, r *kgo.Record, p func(*kgo.Record, error)) {
	t.s.Produce(ctx, r, p)
}
func (t txnSession) end(ctx context.Context, commit bool, _ []*kgo.Record) (bool, error) {
	return t.s.End(ctx, kgo.TransactionEndTry(commit))
}
func (t txnSession) flush(ctx context.Context) error { return t.s.Client().Flush(ctx) }
func (t txnSession) client() *kgo.Client             { return t.s.Client() }
func (t txnSession) close()                          { t.s.Close() }

type plainSession struct{ cl *kgo.Client }

func (p plainSession) poll(ctx context.Context, max int) kgo.Fetches {
	return p.cl.PollRecords(ctx, max)
}
func (p plainSession) begin() error { return nil }
func (p plainSession) produce(ctx context.Context, r *kgo.Record, pr func(*kgo.Record, error)) {
	p.cl.Produce(ctx, r, pr)
}
func (p plainSession) end(ctx context.Context, commit bool, polled []*kgo.Record) (bool, error) {
	// Every poll since the last batch blocked rebalances
	// (BlockRebalanceOnPoll); once this batch is settled they may run.
	defer p.cl.AllowRebalance()
	if err := p.cl.Flush(ctx); err != nil {
		return false, err
	}
	if !commit {
		// Rewind so the batch is consumed again: at-least-once.
		p.rewind(polled)
		return false, nil
	}
	if err := p.cl.CommitRecords(ctx, polled...); err != nil {
		p.rewind(polled)
		return false, fmt.Errorf("commit offsets: %w", err)
	}
	return true, nil
}

// rewind resets fetch positions to the first record of each partition.
func (p plainSession) rewind(polled []*kgo.Record) {
	first := map[string]map[int32]kgo.EpochOffset{}
	for _, r := range polled {
		if first[r.Topic] == nil {
			first[r.Topic] = map[int32]kgo.EpochOffset{}
		}
		if _, ok := first[r.Topic][r.Partition]; !ok {
			first[r.Topic][r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
	}
	p.cl.SetOffsets(first)
}
func (p plainSession) client() *kgo.Client             { return p.cl }
func (p plainSession) flush(ctx context.Context) error { return p.cl.Flush(ctx) }

// close must allow rebalances: the last poll (the one that saw the
// shutdown) blocked them, and leaving the group waits for them.
func (p plainSession) close() { p.cl.CloseAllowingRebalance() }

func (c *Consumer) runTransactional(ctx context.Context) error {
	s, err := kgo.NewGroupTransactSession(c.clientOpts()...)
	if err != nil {
		return fmt.Errorf("consumer: kafka client: %w", err)
	}
	return c.loop(ctx, txnSession{s})
}

func (c *Consumer) runAtLeastOnce(ctx context.Context) error {
	cl, err := kgo.NewClient(c.clientOpts()...)
	if err != nil {
		return fmt.Errorf("consumer: kafka client: %w", err)
	}
	return c.loop(ctx, plainSession{cl})
}

// loop is the ordered pipeline: poll a batch → classify → produce outputs →
// commit, one batch at a time. Kafka's fetch buffer ahead of it is bounded,
// so a slow model slows consumption rather than growing memory.
func (c *Consumer) loop(ctx context.Context, s session) error {
	defer s.close()
	if err := s.client().Ping(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("consumer: reach Kafka at %s: %w", strings.Join(c.cfg.Brokers, ","), err)
	}
	c.setReady(true)
	c.log.Info("consuming", "topics", c.topics, "group", c.cfg.Group, "delivery", c.cfg.Delivery,
		"batch_max", c.cfg.Batch.MaxCount, "batch_wait", c.cfg.Batch.MaxWait.String())
	backoff := 100 * time.Millisecond
	for {
		recs, stopping := c.collect(ctx, s)
		if len(recs) > 0 {
			// Finish the batch in hand even when stopping: a graceful stop
			// commits what it polled instead of leaving it for reprocessing.
			pctx, cancel := c.processContext(ctx)
			err := c.handle(pctx, s, recs)
			cancel()
			if err != nil {
				c.log.Error("batch failed; it will be consumed again", "records", len(recs), "err", err)
				if fatal(err) {
					return err
				}
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
				}
				backoff = min(2*backoff, 5*time.Second)
			} else {
				backoff = 100 * time.Millisecond
			}
		}
		if stopping {
			c.log.Info("consumer stopped", "group", c.cfg.Group)
			return nil
		}
	}
}

// processContext survives the shutdown signal for ShutdownTimeout so the
// in-flight batch can be classified, produced and committed.
func (c *Consumer) processContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Err() == nil {
		base, cancel := context.WithCancel(context.WithoutCancel(ctx))
		stop := context.AfterFunc(ctx, func() {
			time.AfterFunc(c.cfg.ShutdownTimeout, cancel)
		})
		return base, func() { stop(); cancel() }
	}
	return context.WithTimeout(context.WithoutCancel(ctx), c.cfg.ShutdownTimeout)
}

// fatal errors stop the consumer: the transactional producer was fenced or
// is in a failed state, so continuing could only produce errors.
func fatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

type fatalError struct{ err error }

func (f *fatalError) Error() string { return f.err.Error() }
func (f *fatalError) Unwrap() error { return f.err }

// collect polls until the batch policy fires or ctx ends. stopping is true
// when ctx was cancelled (the caller then finishes recs and returns).
func (c *Consumer) collect(ctx context.Context, s session) (recs []*kgo.Record, stopping bool) {
	clock := batch.NewTracker(c.cfg.Batch)
	limit := c.cfg.MaxPollRecords
	for {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if clock.Len() > 0 {
			wait := clock.UntilNext(time.Now())
			if wait <= 0 {
				return recs, false
			}
			pctx, cancel = context.WithTimeout(ctx, wait)
		}
		fetches := s.poll(pctx, limit-len(recs))
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return append(recs, fetches.Records()...), true
		}
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			c.metrics.pollErrors.Inc()
			c.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
		})
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if n := len(p.Records); n > 0 {
				end := p.HighWatermark
				if p.LastStableOffset >= 0 && p.LastStableOffset < end {
					end = p.LastStableOffset
				}
				c.metrics.lag.WithLabelValues(p.Topic, strconv.Itoa(int(p.Partition))).Set(float64(max(0, end-p.Records[n-1].Offset-1)))
			}
		})
		got := fetches.Records()
		recs = append(recs, got...)
		full := clock.Add(len(got), 0, time.Now())
		if full || len(recs) >= limit || (clock.Len() > 0 && c.cfg.Batch.MaxWait == 0) {
			return recs, false
		}
	}
}
