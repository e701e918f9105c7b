package trainer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/triage-ml/triage/internal/kafkalog"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Kafka defaults of the trainer role.
const (
	DefaultRequestsTopic = "triage.train-requests"
	DefaultStatusTopic   = "triage.train-status"
	DefaultGroup         = "triage-trainer"
)

// KafkaConfig is how training requests and statuses travel between
// processes: JobRequest JSON on RequestsTopic and JobStatus JSON on the
// compacted StatusTopic, both keyed by job id.
type KafkaConfig struct {
	Brokers       []string
	RequestsTopic string // default DefaultRequestsTopic
	StatusTopic   string // default DefaultStatusTopic; created compacted when missing
	Group         string // the trainers' consumer group; default DefaultGroup
	// ClientOpts are appended to every Kafka client's options (TLS, SASL).
	ClientOpts []kgo.Opt
}

func (c *KafkaConfig) validate() error {
	c.RequestsTopic = cmp.Or(c.RequestsTopic, DefaultRequestsTopic)
	c.StatusTopic = cmp.Or(c.StatusTopic, DefaultStatusTopic)
	c.Group = cmp.Or(c.Group, DefaultGroup)
	if len(c.Brokers) == 0 {
		return errors.New("kafka: at least one bootstrap broker is required")
	}
	if c.RequestsTopic == c.StatusTopic {
		return fmt.Errorf("kafka: requests and status topics are both %q", c.StatusTopic)
	}
	return nil
}

func (c *KafkaConfig) client(log *slog.Logger, id string, opts ...kgo.Opt) (*kgo.Client, error) {
	all := append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(id), kgo.WithLogger(kafkalog.New(log))}, opts...)
	cl, err := kgo.NewClient(append(all, c.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client %s: %w", id, err)
	}
	return cl, nil
}

// ensureTopics creates the requests topic and the compacted status topic
// when missing; a status topic that exists without compaction is only
// logged (changing it is an operator's decision).
func ensureTopics(ctx context.Context, cl *kgo.Client, c KafkaConfig, log *slog.Logger) error {
	adm := kadm.NewClient(cl)
	compact := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	for _, t := range []struct {
		name    string
		configs map[string]*string
	}{{c.RequestsTopic, nil}, {c.StatusTopic, compact}} {
		resp, err := adm.CreateTopic(ctx, -1, -1, t.configs, t.name)
		if err == nil {
			log.Info("kafka topic created", "topic", t.name, "compacted", t.configs != nil)
			continue
		}
		if !errors.Is(err, kerr.TopicAlreadyExists) {
			// Without permission to create, a topic that exists will do.
			if td, lerr := adm.ListTopics(ctx, t.name); lerr != nil || !td.Has(t.name) || td[t.name].Err != nil {
				return fmt.Errorf("kafka topic %s: create: %w", t.name, cmp.Or(err, resp.Err))
			}
			log.Warn("kafka topic exists but could not be checked", "topic", t.name, "err", err)
		}
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, c.StatusTopic)
	if err != nil || len(rcs) == 0 {
		log.Warn("cannot read the status topic's configuration", "topic", c.StatusTopic, "err", err)
		return nil
	}
	for _, cfg := range rcs[0].Configs {
		if cfg.Key == "cleanup.policy" && (cfg.Value == nil || !strings.Contains(*cfg.Value, "compact")) {
			log.Warn("status topic is not compacted: it keeps every status change, not each job's latest", "topic", c.StatusTopic)
		}
	}
	return nil
}

// kafkaService is a JobService's Kafka side: it takes requests from the
// requests topic in a consumer group and publishes statuses.
type kafkaService struct {
	cfg     KafkaConfig
	log     *slog.Logger
	prod    *kgo.Client
	cons    *kgo.Client
	started atomic.Bool
}

func newKafkaService(cfg KafkaConfig, log *slog.Logger) (*kafkaService, error) {
	prod, err := cfg.client(log, "triage-trainer-status", kgo.DefaultProduceTopic(cfg.StatusTopic))
	if err != nil {
		return nil, err
	}
	return &kafkaService{cfg: cfg, log: log, prod: prod}, nil
}

// start makes sure the topics exist and joins the group.
func (k *kafkaService) start(ctx context.Context) error {
	if err := ensureTopics(ctx, k.prod, k.cfg, k.log); err != nil {
		return fmt.Errorf("trainer: %w", err)
	}
	cons, err := k.cfg.client(k.log, "triage-trainer",
		kgo.ConsumerGroup(k.cfg.Group), kgo.ConsumeTopics(k.cfg.RequestsTopic),
		// Offsets are committed by hand once requests are queued, and no
		// rebalance may take partitions between polling and committing.
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll())
	if err != nil {
		return err
	}
	k.cons = cons
	k.started.Store(true)
	return nil
}

// publish produces st keyed by its job id. A failure is logged: the job
// carries on, and its next status supersedes this one.
func (k *kafkaService) publish(st JobStatus) {
	if !k.started.Load() {
		return
	}
	v, err := json.Marshal(st)
	if err != nil {
		k.log.Error("encode training status", "job", st.ID, "err", err)
		return
	}
	k.prod.Produce(context.Background(), &kgo.Record{Key: []byte(st.ID), Value: v}, func(_ *kgo.Record, err error) {
		if err != nil {
			k.log.Warn("publish training status", "job", st.ID, "status", st.Status, "err", err)
		}
	})
}

// consume queues requests until ctx ends, polling only as many as the
// queue has room for, so a busy trainer leaves requests to its peers.
// A request's offset is committed once it is queued (or rejected).
func (k *kafkaService) consume(ctx context.Context, s *JobService) {
	defer k.cons.CloseAllowingRebalance() // leaves the group: peers take the partitions now
	for {
		if !s.waitRoom(ctx) {
			return
		}
		fs := k.cons.PollRecords(ctx, s.room())
		if fs.IsClientClosed() || ctx.Err() != nil {
			return // records polled but not queued are not committed: a peer gets them
		}
		fs.EachError(func(t string, p int32, err error) {
			k.log.Warn("fetch training requests", "topic", t, "partition", p, "err", err)
		})
		var queued []*kgo.Record
		for _, rec := range fs.Records() {
			if !k.accept(ctx, s, rec) {
				break
			}
			queued = append(queued, rec)
		}
		if len(queued) > 0 {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := k.cons.CommitRecords(cctx, queued...); err != nil {
				k.log.Warn("commit training requests", "err", err)
			}
			cancel()
		}
		k.cons.AllowRebalance()
	}
}

// accept queues one request, waiting for room; false means shutdown came
// first. Invalid requests become failed jobs so their sender sees why.
func (k *kafkaService) accept(ctx context.Context, s *JobService, rec *kgo.Record) bool {
	var r JobRequest
	err := json.Unmarshal(rec.Value, &r)
	if err != nil || !idRE.MatchString(r.ID) {
		k.log.Warn("unreadable training request skipped", "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return true
	}
	for {
		_, err := s.Submit(ctx, r)
		switch {
		case err == nil:
			return true
		case errors.Is(err, ErrDuplicateJob):
			k.log.Debug("training request seen before", "job", r.ID)
			return true
		case errors.Is(err, ErrStopped):
			return false
		case errors.Is(err, ErrQueueFull):
			if !s.waitRoom(ctx) {
				return false
			}
		default:
			s.reject(r, err)
			return true
		}
	}
}

// close flushes the statuses still buffered and closes the producer.
func (k *kafkaService) close() {
	k.started.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.prod.Flush(ctx); err != nil {
		k.log.Warn("flush training statuses", "err", err)
	}
	k.prod.Close()
}

// room is how many more jobs the queue holds now.
func (s *JobService) room() int { return cap(s.queue) - len(s.queue) }

// waitRoom waits until the queue has room; false when ctx ends first.
func (s *JobService) waitRoom(ctx context.Context) bool {
	for s.room() == 0 {
		select {
		case <-ctx.Done():
			return false
		case <-s.slot:
		case <-time.After(time.Second): // in-process Submits compete for room too
		}
	}
	return ctx.Err() == nil
}

// KafkaJobsConfig configures a KafkaJobs client.
type KafkaJobsConfig struct {
	Kafka KafkaConfig // Group is not used
	// UploadDir is the uploads folder shared with the trainers (their
	// JobsConfig.UploadDir, on a volume both see); default
	// DefaultUploadDir().
	UploadDir string
	Logger    *slog.Logger
}

// KafkaJobs submits jobs to trainers in other processes: Submit produces
// the request, and Get answers from the status topic, which it follows
// from the start.
type KafkaJobs struct {
	cfg    KafkaJobsConfig
	log    *slog.Logger
	prod   *kgo.Client
	cons   *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	ready  atomic.Bool
	once   sync.Once

	mu     sync.Mutex
	status map[string]JobStatus
}

var _ Jobs = (*KafkaJobs)(nil)

// NewKafkaJobs makes sure the topics exist and starts following the
// status topic; Close stops it.
func NewKafkaJobs(ctx context.Context, cfg KafkaJobsConfig) (*KafkaJobs, error) {
	if err := cfg.Kafka.validate(); err != nil {
		return nil, fmt.Errorf("training jobs client: %w", err)
	}
	cfg.UploadDir = cmp.Or(cfg.UploadDir, DefaultUploadDir())
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("component", "train-jobs-client")
	prod, err := cfg.Kafka.client(log, "triage-train-requests", kgo.DefaultProduceTopic(cfg.Kafka.RequestsTopic))
	if err != nil {
		return nil, err
	}
	if err := ensureTopics(ctx, prod, cfg.Kafka, log); err != nil {
		prod.Close()
		return nil, fmt.Errorf("training jobs client: %w", err)
	}
	// Where the topic ends now: Ready once read up to there.
	ends := map[int32]int64{}
	offs, err := kadm.NewClient(prod).ListEndOffsets(ctx, cfg.Kafka.StatusTopic)
	if err != nil {
		log.Warn("list status topic offsets", "err", err)
	}
	offs.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > 0 {
			ends[o.Partition] = o.Offset
		}
	})
	cons, err := cfg.Kafka.client(log, "triage-train-status", kgo.ConsumeTopics(cfg.Kafka.StatusTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		prod.Close()
		return nil, err
	}
	fctx, cancel := context.WithCancel(context.Background())
	k := &KafkaJobs{cfg: cfg, log: log, prod: prod, cons: cons, cancel: cancel, done: make(chan struct{}),
		status: map[string]JobStatus{}}
	go k.follow(fctx, ends)
	return k, nil
}

// UploadDir is where uploads must be written for the trainers to find them.
func (k *KafkaJobs) UploadDir() string { return k.cfg.UploadDir }

// Ready reports whether the status topic has been read up to where it
// ended at start, so Get knows every earlier job.
func (k *KafkaJobs) Ready() bool { return k.ready.Load() }

// Submit publishes r's queued status, then r, and returns the status;
// see Jobs. The queue is Kafka: it is never full.
func (k *KafkaJobs) Submit(ctx context.Context, r JobRequest) (JobStatus, error) {
	if err := checkRequest(&r, k.cfg.UploadDir); err != nil {
		return JobStatus{}, err
	}
	v, err := json.Marshal(r)
	if err != nil {
		return JobStatus{}, fmt.Errorf("encode training request: %w", err)
	}
	st := queuedStatus(r)
	sv, err := json.Marshal(st)
	if err != nil {
		return JobStatus{}, fmt.Errorf("encode training status: %w", err)
	}
	k.mu.Lock()
	if _, dup := k.status[r.ID]; dup {
		k.mu.Unlock()
		return JobStatus{}, fmt.Errorf("%w: %s", ErrDuplicateJob, r.ID)
	}
	k.status[r.ID] = st // Get works before the trainer's first status arrives
	k.mu.Unlock()
	// The queued status goes first, so every client (other gateways, this
	// one restarted) knows the job even while no trainer runs; it is
	// appended before the request exists, so it never overwrites a
	// trainer's status.
	key := []byte(r.ID)
	err = k.prod.ProduceSync(ctx, &kgo.Record{Topic: k.cfg.Kafka.StatusTopic, Key: key, Value: sv}).FirstErr()
	if err == nil {
		if err = k.prod.ProduceSync(ctx, &kgo.Record{Key: key, Value: v}).FirstErr(); err != nil {
			// Withdraw the status: a tombstone.
			tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if terr := k.prod.ProduceSync(tctx, &kgo.Record{Topic: k.cfg.Kafka.StatusTopic, Key: key}).FirstErr(); terr != nil {
				k.log.Warn("withdraw status of an unsubmitted training job", "job", r.ID, "err", terr)
			}
			cancel()
		}
	}
	if err != nil {
		k.mu.Lock()
		delete(k.status, r.ID) // no trainer saw it
		k.mu.Unlock()
		return JobStatus{}, fmt.Errorf("submit training job %s to kafka: %w", r.ID, err)
	}
	return st, nil
}

// Get returns the latest status read for id; see Jobs.
func (k *KafkaJobs) Get(_ context.Context, id string) (JobStatus, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	st, ok := k.status[id]
	if !ok {
		return JobStatus{}, fmt.Errorf("job %q: %w", id, ErrJobNotFound)
	}
	return st, nil
}

// Close stops following statuses and closes the clients.
func (k *KafkaJobs) Close() {
	k.once.Do(func() {
		k.cancel()
		<-k.done
		k.cons.Close()
		k.prod.Close()
	})
}

// follow applies the status topic to the status map until ctx ends.
func (k *KafkaJobs) follow(ctx context.Context, ends map[int32]int64) {
	defer close(k.done)
	if len(ends) == 0 {
		k.ready.Store(true)
	}
	for ctx.Err() == nil {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if !k.ready.Load() {
			// An idle poll also means caught up (compaction or control
			// records can leave the last offsets unreadable).
			pctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		}
		fs := k.cons.PollFetches(pctx)
		idle := pctx.Err() != nil
		cancel()
		if fs.IsClientClosed() || ctx.Err() != nil {
			return
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				k.log.Warn("fetch training statuses", "topic", t, "partition", p, "err", err)
			}
		})
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			n++
			k.apply(r)
			if end, ok := ends[r.Partition]; ok && r.Offset+1 >= end {
				delete(ends, r.Partition)
			}
		})
		if !k.ready.Load() && (len(ends) == 0 || idle && n == 0) {
			k.ready.Store(true)
			k.log.Info("training statuses caught up")
		}
	}
}

func (k *KafkaJobs) apply(r *kgo.Record) {
	id := string(r.Key)
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(r.Value) == 0 { // a tombstone: the job is forgotten
		delete(k.status, id)
		return
	}
	var st JobStatus
	if err := json.Unmarshal(r.Value, &st); err != nil {
		k.log.Warn("unreadable training status skipped", "job", id, "offset", r.Offset, "err", err)
		return
	}
	k.status[id] = st
}
