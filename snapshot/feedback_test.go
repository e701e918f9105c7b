package snapshot

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/internal/dataset"
	"github.com/triage-ml/triage/schemas"
)

const (
	fbTopic = "triage.feedback"
	dlTopic = "triage.dead-letters"
)

func feedbackCluster(t *testing.T) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, fbTopic), kfake.SeedTopics(1, dlTopic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// produce writes recs (Topic defaults to the feedback topic) and returns
// them with their partitions and offsets.
func produce(t *testing.T, addr string, recs ...*kgo.Record) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(fbTopic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range recs { // one by one: order per key is what is tested
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	return recs
}

func fbRecord(key, value string) *kgo.Record {
	r := &kgo.Record{Value: []byte(value)}
	if key != "" {
		r.Key = []byte(key)
	}
	return r
}

func TestReadFeedbackAndPublishRejects(t *testing.T) {
	addr := feedbackCluster(t)
	long := strings.Repeat("x", 101)
	recs := produce(t, addr,
		fbRecord("a", `{"id":"a","text":"my card is late","label":"card_arrival","model":"support"}`),
		fbRecord("a", `{"id":"a","text":"my card is late","label":"card_delivery","model":"support"}`), // replaces the first
		fbRecord("b", `{"id":"b","text":"refund me","label":"refund"}`),                                // no model: any model's
		fbRecord("c", `{"id":"c","text":"a moving film","label":"pos","model":"reviews"}`),
		fbRecord("d", `{"id":"d","text":"what is this","label":"x","model":"nope"}`),
		&kgo.Record{Key: []byte("e"), Value: []byte(`{"id":"e","text":`), Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte{1, 2}}}},
		fbRecord("f", `{"id":"f","text":"no label"}`),
		fbRecord("g", `{"id":"g","text":"  \n ","label":"l"}`),
		fbRecord("h", `{"id":"h","text":"`+long+`","label":"l"}`),
		fbRecord("i", `{"id":"i","text":"deleted later","label":"l"}`),
		&kgo.Record{Key: []byte("i")}, // tombstone: compaction drops id i
		fbRecord("k1", `{"id":"k2","text":"wrong key","label":"l"}`),
		fbRecord("j", `{"id":"j","text":"valid, then broken","label":"ok"}`),
		fbRecord("j", `not json`), // rejected: does not remove j's label
	)
	wantEnds := map[int32]int64{0: 0, 1: 0}
	for _, r := range recs {
		wantEnds[r.Partition] = max(wantEnds[r.Partition], r.Offset+1)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	fb, err := ReadFeedback(ctx, FeedbackSource{Brokers: []string{addr}, Topic: fbTopic, MaxTextBytes: 100,
		KnownModels: []string{"support", "reviews"}})
	if err != nil {
		t.Fatal(err)
	}
	if fb.Records != len(recs) || len(fb.Offsets) != 2 || fb.Offsets[0] != wantEnds[0] || fb.Offsets[1] != wantEnds[1] {
		t.Errorf("read %d records, offsets %v; want %d records, offsets %v", fb.Records, fb.Offsets, len(recs), wantEnds)
	}
	got := map[string]string{}
	for m, ls := range fb.Labels {
		for _, l := range ls {
			got[m+"/"+l.ID] = l.Label
		}
	}
	want := map[string]string{"support/a": "card_delivery", "/b": "refund", "reviews/c": "pos", "/j": "ok"}
	if !maps.Equal(got, want) {
		t.Errorf("labels %v, want %v", got, want)
	}
	codes := map[string]string{}
	for _, r := range fb.Rejects {
		codes[string(r.Key)] = r.Code
	}
	wantCodes := map[string]string{"d": schemas.ReasonUnknownModel, "e": schemas.ReasonInvalidJSON, "f": schemas.ReasonSchemaViolation,
		"g": schemas.ReasonEmptyText, "h": schemas.ReasonTextTooLong, "k1": schemas.ReasonSchemaViolation, "j": schemas.ReasonInvalidJSON}
	if !maps.Equal(codes, wantCodes) {
		t.Errorf("reject codes %v, want %v", codes, wantCodes)
	}

	// No reject reaches a snapshot.
	rows := Build([]dataset.Example{{Text: "hello", Label: "greet"}}, fb.For("support"))
	var texts []string
	for _, r := range rows {
		texts = append(texts, r.Text)
	}
	if want := []string{"hello", "my card is late", "refund me", "valid, then broken"}; !slices.Equal(sorted(texts), want) {
		t.Errorf("support rows %v, want %v", texts, want)
	}

	// Each reject once, even when listed twice.
	n, err := PublishRejects(ctx, []string{addr}, dlTopic, append(fb.Rejects, fb.Rejects[0]))
	if err != nil || n != len(wantCodes) {
		t.Fatalf("PublishRejects = %d, %v; want %d", n, err, len(wantCodes))
	}
	dls := readAll(t, addr, dlTopic, len(wantCodes))
	byOffset := map[int64]*kgo.Record{}
	for _, r := range recs {
		byOffset[int64(r.Partition)<<32|r.Offset] = r
	}
	for _, rec := range dls {
		if err := schemas.MustValidator(schemas.KindDeadLetter).Validate(rec.Value); err != nil {
			t.Errorf("dead letter fails its schema: %v\n%s", err, rec.Value)
		}
		var dl schemas.DeadLetter
		if err := json.Unmarshal(rec.Value, &dl); err != nil {
			t.Fatal(err)
		}
		orig := byOffset[int64(dl.Source.Partition)<<32|dl.Source.Offset]
		if orig == nil || dl.Source.Topic != fbTopic || string(dl.Original.Value) != string(orig.Value) ||
			string(dl.Original.Key) != string(orig.Key) || string(rec.Key) != string(orig.Key) {
			t.Errorf("dead letter %s does not point at its original record", rec.Value)
			continue
		}
		if dl.Reason.Code != wantCodes[string(orig.Key)] || dl.Reason.Message == "" {
			t.Errorf("dead letter of %s: reason %+v, want %s", orig.Key, dl.Reason, wantCodes[string(orig.Key)])
		}
		if string(orig.Key) == "e" && (len(dl.Original.Headers) != 1 || dl.Original.Headers[0].Key != "trace" ||
			string(dl.Original.Headers[0].Value) != "\x01\x02") {
			t.Errorf("original headers lost: %+v", dl.Original.Headers)
		}
	}

	// Records produced later are the next read's: offsets move on.
	more := produce(t, addr, fbRecord("a", `{"id":"a","text":"my card is late","label":"card_arrival","model":"support"}`))
	fb2, err := ReadFeedback(ctx, FeedbackSource{Brokers: []string{addr}, Topic: fbTopic, MaxTextBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	p := more[0].Partition
	if fb2.Offsets[p] != fb.Offsets[p]+1 || fb2.Labels["support"][0].Label != "card_arrival" {
		t.Errorf("second read: offsets %v (first %v), support labels %+v", fb2.Offsets, fb.Offsets, fb2.Labels["support"])
	}
	if since := fb2.RejectsSince(fb.Offsets); len(since) != 0 {
		t.Errorf("rejects new since the first read: %+v", since)
	}
	// Without KnownModels, a record naming any model is accepted.
	if _, ok := fb2.Labels["nope"]; !ok {
		t.Errorf("without known models, model nope's label was rejected: %v", fb2.Labels)
	}
}

// TestReadFeedbackTransactions: aborted records never count, and a topic
// ending in a transaction marker is still read to its end (not waited on).
func TestReadFeedbackTransactions(t *testing.T) {
	addr := feedbackCluster(t)
	for _, tc := range []struct {
		commit bool
		id     string
	}{{true, "kept"}, {false, "aborted"}} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(fbTopic), kgo.TransactionalID("tx-"+tc.id))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, fbRecord(tc.id, `{"id":"`+tc.id+`","text":"t `+tc.id+`","label":"l"}`)).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(tc.commit)); err != nil {
			t.Fatal(err)
		}
		cl.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fb, err := ReadFeedback(ctx, FeedbackSource{Brokers: []string{addr}, Topic: fbTopic})
	if err != nil {
		t.Fatal(err)
	}
	if ls := fb.For("any"); len(ls) != 1 || ls[0].ID != "kept" || fb.Records != 1 || len(fb.Rejects) != 0 {
		t.Errorf("labels %+v, records %d, rejects %d; want only the committed one", ls, fb.Records, len(fb.Rejects))
	}
}

func TestReadFeedbackUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := ReadFeedback(ctx, FeedbackSource{Brokers: []string{"127.0.0.1:1"}, Topic: fbTopic})
	if err == nil || !strings.Contains(err.Error(), `read feedback "triage.feedback" from 127.0.0.1:1`) {
		t.Errorf("unreachable broker: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %s to give up", time.Since(start))
	}
	addr := feedbackCluster(t)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, err := ReadFeedback(ctx2, FeedbackSource{Brokers: []string{addr}, Topic: "no-such-topic"}); err == nil {
		t.Error("a missing topic read as empty")
	}
}

func readAll(t *testing.T, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	// Nothing beyond n: wait briefly for stragglers (duplicates).
	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	cl.PollFetches(sctx).EachRecord(func(r *kgo.Record) { out = append(out, r) })
	if len(out) != n {
		t.Fatalf("%s holds %d records, want %d", topic, len(out), n)
	}
	return out
}

func sorted(s []string) []string { slices.Sort(s); return s }
