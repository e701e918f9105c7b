package snapshot

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/internal/kafkalog"
	"github.com/triage-ml/triage/schemas"
)

// DefaultMaxTextBytes is the consumer's text limit: a text the classifier
// would dead-letter is not trained on either.
const DefaultMaxTextBytes = 64 << 10

// FeedbackSource says where the labels are and which records to accept.
type FeedbackSource struct {
	Brokers    []string
	Topic      string
	ClientOpts []kgo.Opt // appended to the client's own (TLS, SASL, tests)
	// MaxTextBytes rejects longer texts (text_too_long); 0 means
	// DefaultMaxTextBytes.
	MaxTextBytes int
	// KnownModels, when not empty, rejects records that name another model
	// (unknown_model). Records that name no model are always accepted.
	KnownModels []string
	Logger      *slog.Logger // default: discard
}

// Label is one accepted feedback record.
type Label struct {
	ID, Text, Label string
	Model           string // "" in records written before feedback named its model
	Annotator       string
	Eval            bool // marked for evaluation, not training
	// Time is the record's created_at, or its Kafka timestamp without one.
	Time      time.Time
	Partition int32
	Offset    int64
}

// compareLabels orders labels oldest first: by Time, then partition and
// offset. Offsets alone would do within one partition, but the topic has
// several and different ids land on different partitions.
func compareLabels(a, b Label) int {
	return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset),
		strings.Compare(a.ID, b.ID))
}

// Reject is a feedback record that cannot be training data, with the
// dead-letter reason code (a schemas.Reason* constant).
type Reject struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []schemas.Header
	Code      string
	Message   string
}

// Feedback is what ReadFeedback found.
type Feedback struct {
	Topic string
	// Offsets is, per partition, the end offset read up to (exclusive):
	// the snapshot's source feedback offsets.
	Offsets map[int32]int64
	// Labels are the latest valid label of each id, per model, oldest
	// first; key "" holds the records that name no model.
	Labels  map[string][]Label
	Rejects []Reject
	Records int // records read, tombstones and rejects included
}

// For is model's training labels: the records naming it, and those naming
// no model (written before feedback carried one: they are accepted for
// whichever model the snapshot is taken for), oldest first.
func (f Feedback) For(model string) []Label {
	out := append(slices.Clone(f.Labels[model]), f.Labels[""]...)
	slices.SortFunc(out, compareLabels)
	return out
}

// RejectsSince drops the rejects below offsets (a previous snapshot's
// source offsets), so each run dead-letters only what is new to it.
func (f Feedback) RejectsSince(offsets map[int32]int64) []Reject {
	var out []Reject
	for _, r := range f.Rejects {
		if r.Offset >= offsets[r.Partition] {
			out = append(out, r)
		}
	}
	return out
}

// ReadFeedback reads src.Topic from the start up to its end offsets at the
// time of the call (no consumer group, nothing committed) and keeps the
// latest record per id, as compaction would: a later record replaces an
// earlier one, a tombstone (null value, key = id) deletes it. Invalid
// records become Rejects and neither add nor remove a label.
//
// It reads committed records only, up to the last stable offset
// (kadm's ListCommittedOffsets, ListEndOffsets' read_committed twin), so an
// open transaction cannot hold the read back. Bound it with ctx: an
// unreachable broker fails when ctx ends, naming the broker.
func ReadFeedback(ctx context.Context, src FeedbackSource) (Feedback, error) {
	fb, err := readFeedback(ctx, src)
	if err != nil {
		return Feedback{}, fmt.Errorf("read feedback %q from %s: %w", src.Topic, strings.Join(src.Brokers, ","), err)
	}
	return fb, nil
}

func readFeedback(ctx context.Context, src FeedbackSource) (Feedback, error) {
	if src.Topic == "" || len(src.Brokers) == 0 {
		return Feedback{}, errors.New("a topic and at least one broker are required")
	}
	if src.MaxTextBytes == 0 {
		src.MaxTextBytes = DefaultMaxTextBytes
	}
	if src.MaxTextBytes < 1 {
		return Feedback{}, fmt.Errorf("max text bytes %d: must be >= 1", src.MaxTextBytes)
	}
	log := src.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var conn connErr
	opts := append([]kgo.Opt{kgo.SeedBrokers(src.Brokers...), kgo.ClientID("triage-snapshot"),
		kgo.WithLogger(kafkalog.New(log)), kgo.WithHooks(&conn)}, src.ClientOpts...)
	admCl, err := kgo.NewClient(opts...)
	if err != nil {
		return Feedback{}, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	ends, err := adm.ListCommittedOffsets(ctx, src.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return Feedback{}, conn.wrap(fmt.Errorf("list end offsets: %w", err))
	}
	starts, err := adm.ListStartOffsets(ctx, src.Topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return Feedback{}, conn.wrap(fmt.Errorf("list start offsets: %w", err))
	}
	fb := Feedback{Topic: src.Topic, Offsets: map[int32]int64{}, Labels: map[string][]Label{}}
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		fb.Offsets[o.Partition] = o.Offset
		if s, ok := starts.Lookup(o.Topic, o.Partition); !ok || s.Offset < o.Offset {
			from[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(fb.Offsets) == 0 {
		return Feedback{}, fmt.Errorf("topic %q has no partitions", src.Topic)
	}
	r := reader{src: src, known: map[string]bool{}, latest: map[string]Label{}}
	for _, m := range src.KnownModels {
		r.known[m] = true
	}
	if len(from) > 0 {
		// Control records are kept so the last offset before the end is
		// always seen, even when it is a transaction marker.
		cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{src.Topic: from}),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
		if err != nil {
			return Feedback{}, err
		}
		defer cl.Close()
		if err := r.consume(ctx, cl, fb.Offsets, from); err != nil {
			return Feedback{}, conn.wrap(err)
		}
	}
	for _, l := range r.latest {
		fb.Labels[l.Model] = append(fb.Labels[l.Model], l)
	}
	for m := range fb.Labels {
		slices.SortFunc(fb.Labels[m], compareLabels)
	}
	fb.Rejects, fb.Records = r.rejects, r.records
	log.Info("feedback read", "topic", src.Topic, "records", r.records, "labels", len(r.latest),
		"rejects", len(r.rejects), "models", slices.Sorted(maps.Keys(fb.Labels)))
	return fb, nil
}

// connErr remembers the last failed broker connection, so a read that
// times out says why instead of only "context deadline exceeded".
type connErr struct {
	mu        sync.Mutex
	addr, err string
}

func (c *connErr) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addr, c.err = net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), ""
	if err != nil {
		c.err = err.Error()
	}
}

// wrap adds the last connection error to err, unless err already says it.
func (c *connErr) wrap(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == "" || strings.Contains(err.Error(), c.err) {
		return err
	}
	return fmt.Errorf("%w (last connection to %s: %s)", err, c.addr, c.err)
}

type reader struct {
	src     FeedbackSource
	known   map[string]bool
	latest  map[string]Label // by id
	rejects []Reject
	records int
}

// consume polls until every partition in from has been read up to ends.
func (r *reader) consume(ctx context.Context, cl *kgo.Client, ends map[int32]int64, from map[int32]kgo.Offset) error {
	left := map[int32]bool{}
	for p := range from {
		left[p] = true
	}
	for len(left) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read up to the end offsets (%d partitions left): %w", len(left), err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("partition %d: %w", p, err))
		})
		if ferr != nil {
			return ferr
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			end := ends[rec.Partition]
			if !left[rec.Partition] || rec.Offset >= end {
				return // produced after the call started: the next snapshot's
			}
			if rec.Offset+1 >= end {
				delete(left, rec.Partition)
			}
			if !rec.Attrs.IsControl() {
				r.add(rec)
			}
		})
	}
	return nil
}

// add applies one record in partition order.
func (r *reader) add(rec *kgo.Record) {
	r.records++
	if rec.Value == nil {
		delete(r.latest, string(rec.Key))
		return
	}
	l, code, msg := r.check(rec)
	if code != "" {
		headers := make([]schemas.Header, len(rec.Headers))
		for i, h := range rec.Headers {
			headers[i] = schemas.Header{Key: h.Key, Value: h.Value}
		}
		r.rejects = append(r.rejects, Reject{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset,
			Key: rec.Key, Value: rec.Value, Headers: headers, Code: code, Message: msg})
		return
	}
	// The same id on two partitions (the topic was re-partitioned, or a
	// producer keyed differently): the later label wins.
	if cur, ok := r.latest[l.ID]; ok && cur.Partition != l.Partition && compareLabels(l, cur) < 0 {
		return
	}
	r.latest[l.ID] = l
}

// check validates one record in the consumer's order, most specific reason
// first: bytes, JSON, schema, key, then text and model rules.
func (r *reader) check(rec *kgo.Record) (Label, string, string) {
	if !utf8.Valid(rec.Value) {
		return Label{}, schemas.ReasonInvalidUTF8, "record value is not valid UTF-8"
	}
	var fb schemas.Feedback
	switch err := schemas.Decode(schemas.KindFeedback, rec.Value, &fb); {
	case errors.Is(err, schemas.ErrInvalidJSON):
		return Label{}, schemas.ReasonInvalidJSON, err.Error()
	case err != nil:
		return Label{}, schemas.ReasonSchemaViolation, err.Error()
	}
	if len(rec.Key) > 0 && string(rec.Key) != fb.ID {
		// Compaction keeps the latest record per key: a key that is not
		// the id would let it drop the wrong label.
		return Label{}, schemas.ReasonSchemaViolation, fmt.Sprintf("record key %q is not the id %q", rec.Key, fb.ID)
	}
	label := strings.TrimSpace(fb.Label)
	switch {
	case strings.TrimSpace(fb.Text) == "":
		return Label{}, schemas.ReasonEmptyText, "text is empty or whitespace only"
	case len(fb.Text) > r.src.MaxTextBytes:
		return Label{}, schemas.ReasonTextTooLong, fmt.Sprintf("text is %d bytes, the limit is %d", len(fb.Text), r.src.MaxTextBytes)
	case label == "":
		return Label{}, schemas.ReasonSchemaViolation, "/label: is whitespace only"
	case fb.Model != "" && len(r.known) > 0 && !r.known[fb.Model]:
		return Label{}, schemas.ReasonUnknownModel, fmt.Sprintf("model %q is not one of %s", fb.Model,
			strings.Join(slices.Sorted(maps.Keys(r.known)), ", "))
	}
	l := Label{ID: fb.ID, Text: fb.Text, Label: label, Model: fb.Model, Annotator: fb.Annotator, Eval: fb.Eval, Time: rec.Timestamp.UTC(),
		Partition: rec.Partition, Offset: rec.Offset}
	if fb.CreatedAt != nil {
		l.Time = fb.CreatedAt.UTC()
	}
	return l, "", ""
}

// Headers of a dead letter, as the consumer writes them (consumer.HeaderKind
// and friends; that package loads ONNX Runtime, so they are not imported).
const (
	headerKind   = "triage-kind"
	headerSchema = "triage-schema"
	headerReason = "triage-reason"
	// maxDeadLetterValue keeps a base64-encoded dead letter under Kafka's
	// default 1 MB record limit, as the consumer does.
	maxDeadLetterValue = 512 << 10
)

// PublishRejects writes each reject to topic as a schemas.DeadLetter
// (original bytes, key and headers, reason, source coordinates), keyed by
// the original key, and waits for every acknowledgement. A reject listed
// twice (same topic, partition, offset) is written once. It returns how many
// were written.
func PublishRejects(ctx context.Context, brokers []string, topic string, rejects []Reject, opts ...kgo.Opt) (int, error) {
	if len(rejects) == 0 {
		return 0, nil
	}
	type coord struct {
		topic     string
		partition int32
		offset    int64
	}
	seen := map[coord]bool{}
	now := time.Now().UTC()
	var recs []*kgo.Record
	for _, r := range rejects {
		c := coord{r.Topic, r.Partition, r.Offset}
		if seen[c] {
			continue
		}
		seen[c] = true
		value, msg := r.Value, r.Message
		if len(value) > maxDeadLetterValue {
			msg = fmt.Sprintf("%s (original value of %d bytes cut to %d in this dead letter)", msg, len(value), maxDeadLetterValue)
			value = value[:maxDeadLetterValue]
		}
		headers := r.Headers
		if headers == nil {
			headers = []schemas.Header{} // the schema wants an array, not null
		}
		v, err := json.Marshal(schemas.DeadLetter{
			Original: schemas.Original{Value: value, Key: r.Key, Headers: headers},
			Reason:   schemas.Reason{Code: r.Code, Message: msg},
			Source:   schemas.Source{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset},
			FailedAt: now,
		})
		if err != nil {
			return 0, fmt.Errorf("encode dead letter of %s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)
		}
		recs = append(recs, &kgo.Record{Key: r.Key, Value: v, Headers: []kgo.RecordHeader{
			{Key: headerKind, Value: []byte("dead-letter")},
			{Key: headerSchema, Value: []byte(schemas.Version + "/dead-letter")},
			{Key: headerReason, Value: []byte(r.Code)},
		}})
	}
	var conn connErr
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ClientID("triage-snapshot"),
		kgo.DefaultProduceTopic(topic), kgo.WithHooks(&conn)}, opts...)...)
	if err != nil {
		return 0, fmt.Errorf("publish rejects to %q: %w", topic, err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return 0, conn.wrap(fmt.Errorf("publish rejects to %q on %s: %w", topic, strings.Join(brokers, ","), err))
	}
	return len(recs), nil
}
