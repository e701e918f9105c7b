package producer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/schemas"
)

const topic = "t"

// cluster is an in-process broker with topic "t" of 3 partitions.
func cluster(t *testing.T) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// readAll consumes topic from the start until it has want records, then
// checks for a short while that no more arrive.
func readAll(t *testing.T, brokers []string, want int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	deadline := time.Now().Add(10 * time.Second)
	for len(recs) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
	if len(recs) != want {
		t.Fatalf("topic has %d records, want %d", len(recs), want)
	}
	return recs
}

// decodeAll checks every record is a valid input keyed by its id, with
// unique ids, and returns the inputs by id.
func decodeAll(t *testing.T, recs []*kgo.Record) map[string]schemas.Input {
	t.Helper()
	out := map[string]schemas.Input{}
	for _, r := range recs {
		in, err := schemas.DecodeInput(r.Value)
		if err != nil {
			t.Fatalf("record %s/%d: %v\n%s", r.Key, r.Offset, err, r.Value)
		}
		if string(r.Key) != in.ID {
			t.Fatalf("record key %q, id %q", r.Key, in.ID)
		}
		if _, dup := out[in.ID]; dup {
			t.Fatalf("duplicate id %q", in.ID)
		}
		if in.CreatedAt == nil {
			t.Fatalf("record %s has no created_at", in.ID)
		}
		out[in.ID] = in
	}
	return out
}

func baseConfig(brokers []string) Config {
	return Config{Brokers: brokers, Topic: topic, IDPrefix: "p"}
}

func mustRun(t *testing.T, cfg Config, src Source) Stats {
	t.Helper()
	st, err := Run(context.Background(), cfg, src)
	if err != nil {
		t.Fatalf("Run: %v (stats %+v)", err, st)
	}
	if st.Sent != st.Acked || st.Failed != 0 {
		t.Fatalf("stats %+v: want every sent record acked", st)
	}
	return st
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFileWithIDColumn(t *testing.T) {
	brokers := cluster(t)
	var b strings.Builder
	b.WriteString("ticket,body,queue\n")
	for i := range 50 {
		fmt.Fprintf(&b, "T%03d,\"my card, number %d, has not arrived\",cards\n", i, i)
	}
	f, err := FileSource(writeTemp(t, "q.csv", b.String()), FileOptions{TextColumn: "body", IDColumn: "ticket"})
	if err != nil {
		t.Fatal(err)
	}
	st := mustRun(t, baseConfig(brokers), f)
	if st.Sent != 50 || st.Bytes <= 0 || st.Elapsed <= 0 || st.Rate <= 0 {
		t.Fatalf("stats %+v", st)
	}
	ins := decodeAll(t, readAll(t, brokers, 50))
	for i := range 50 {
		in, ok := ins[fmt.Sprintf("T%03d", i)]
		if !ok {
			t.Fatalf("id T%03d missing", i)
		}
		if want := fmt.Sprintf("my card, number %d, has not arrived", i); in.Text != want || in.Source != "file:q.csv" {
			t.Fatalf("T%03d: text %q source %q", i, in.Text, in.Source)
		}
	}
}

func TestFileLoopsToCount(t *testing.T) {
	brokers := cluster(t)
	var b strings.Builder
	for i := range 7 {
		fmt.Fprintf(&b, "{\"text\": \"review %d\", \"id\": \"r%d\"}\n\n", i, i)
	}
	path := writeTemp(t, "r.jsonl", b.String())

	// Generated ids: <prefix>-1 .. <prefix>-20, texts cycling through the file.
	f, err := FileSource(path, FileOptions{Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(brokers)
	cfg.Count = 20
	mustRun(t, cfg, f)
	ins := decodeAll(t, readAll(t, brokers, 20))
	for n := 1; n <= 20; n++ {
		in, ok := ins[fmt.Sprintf("p-%d", n)]
		if !ok || in.Text != fmt.Sprintf("review %d", (n-1)%7) {
			t.Fatalf("p-%d: %+v (present %v)", n, in, ok)
		}
	}

	// Ids from the file get a pass suffix from the second pass on.
	f, err = FileSource(path, FileOptions{IDColumn: "id", Loop: true})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 16 {
		m, err := f.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.ID)
	}
	want := []string{"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r0~2", "r1~2", "r2~2", "r3~2", "r4~2", "r5~2", "r6~2", "r0~3", "r1~3"}
	if !slices.Equal(ids, want) {
		t.Fatalf("ids %v, want %v", ids, want)
	}

	// Without Loop the file is read once whatever the count.
	f, _ = FileSource(path, FileOptions{})
	cfg.Topic, cfg.Count = topic, 100
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	st, err := p.Run(context.Background(), f)
	if err != nil || st.Sent != 7 {
		t.Fatalf("no loop: sent %d, err %v", st.Sent, err)
	}
}

func TestFileErrors(t *testing.T) {
	if _, err := FileSource(writeTemp(t, "a.csv", "text,id\nhello,\n"), FileOptions{IDColumn: "id"}); err == nil ||
		!strings.Contains(err.Error(), "a.csv:2") || !strings.Contains(err.Error(), `"id"`) {
		t.Fatalf("empty id: %v", err)
	}
	if _, err := FileSource(writeTemp(t, "b.csv", "body\nhello\n"), FileOptions{}); err == nil || !strings.Contains(err.Error(), `no column "text"`) {
		t.Fatalf("missing text column: %v", err)
	}
}

func TestSynthetic(t *testing.T) {
	texts := func(domain string, seed uint64, n int) []string {
		s, err := SyntheticSource(domain, seed)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for range n {
			m, err := s.Next(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(m.Text, "{}") || strings.TrimSpace(m.Text) == "" {
				t.Fatalf("unfilled text %q", m.Text)
			}
			out = append(out, m.Text)
		}
		return out
	}
	a, b, c := texts(DomainSupport, 7, 100), texts(DomainSupport, 7, 100), texts(DomainSupport, 8, 100)
	if !slices.Equal(a, b) {
		t.Fatal("same seed gave different texts")
	}
	if slices.Equal(a, c) {
		t.Fatal("different seeds gave the same texts")
	}
	distinct := map[string]bool{}
	for _, s := range a {
		distinct[s] = true
	}
	if len(distinct) < 50 {
		t.Fatalf("only %d distinct texts of 100", len(distinct))
	}
	if r := texts(DomainReviews, 7, 50); slices.Equal(r, a[:50]) {
		t.Fatal("reviews equal support queries")
	}
	if _, err := SyntheticSource("tweets", 1); err == nil {
		t.Fatal("unknown domain accepted")
	}
	if DomainFor("triage.reviews") != DomainReviews || DomainFor("triage.support-queries") != DomainSupport {
		t.Fatal("DomainFor")
	}

	brokers := cluster(t)
	s, _ := SyntheticSource(DomainMixed, 3)
	cfg := baseConfig(brokers)
	cfg.Count = 300
	if st := mustRun(t, cfg, s); st.Sent != 300 {
		t.Fatalf("sent %d", st.Sent)
	}
	ins := decodeAll(t, readAll(t, brokers, 300))
	domains := map[any]int{}
	for _, in := range ins {
		domains[in.Metadata["domain"]]++
		if in.Source != "synthetic" {
			t.Fatalf("source %q", in.Source)
		}
	}
	if domains[DomainSupport] < 100 || domains[DomainReviews] < 100 {
		t.Fatalf("mixed domains %v", domains)
	}
}

func TestLines(t *testing.T) {
	brokers := cluster(t)
	in := "first text\r\n\n   \nsecond text\nthird, with \"quotes\" and ünïcode\nno newline at end"
	cfg := baseConfig(brokers)
	cfg.Source = "pipe"
	st := mustRun(t, cfg, Lines(strings.NewReader(in)))
	if st.Sent != 4 {
		t.Fatalf("sent %d, want 4", st.Sent)
	}
	ins := decodeAll(t, readAll(t, brokers, 4))
	want := []string{"first text", "second text", "third, with \"quotes\" and ünïcode", "no newline at end"}
	for i, w := range want {
		got := ins[fmt.Sprintf("p-%d", i+1)]
		if got.Text != w || got.Source != "pipe" {
			t.Fatalf("line %d: %+v, want text %q", i+1, got, w)
		}
	}

	// A count stops reading early.
	cfg.Count = 2
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if st, err := p.Run(context.Background(), Lines(strings.NewReader("a\nb\nc\nd\n"))); err != nil || st.Sent != 2 {
		t.Fatalf("count 2: sent %d, err %v", st.Sent, err)
	}
}

func TestRateLimit(t *testing.T) {
	brokers := cluster(t)
	s, _ := SyntheticSource(DomainSupport, 1)
	cfg := baseConfig(brokers)
	cfg.Count, cfg.Rate = 200, 1000
	start := time.Now()
	st := mustRun(t, cfg, s)
	took := time.Since(start)
	// 200 records at 1000/s with a 10-record burst need >= 0.19 s.
	if took < 150*time.Millisecond || st.Elapsed < 150*time.Millisecond {
		t.Fatalf("200 records at --rate 1000 took %v (stats %v): not limited", took, st.Elapsed)
	}
	if took > 3*time.Second {
		t.Fatalf("200 records at --rate 1000 took %v: far too slow", took)
	}
	if st.Rate > 1100 {
		t.Fatalf("achieved rate %.1f over the 1000/s target", st.Rate)
	}
}

// consumerReason mirrors the consumer's validation order (consumer/handle.go)
// with its default 64 KiB text limit.
func consumerReason(v []byte) string {
	if !utf8.Valid(v) {
		return schemas.ReasonInvalidUTF8
	}
	in, err := schemas.DecodeInput(v)
	switch {
	case errors.Is(err, schemas.ErrInvalidJSON):
		return schemas.ReasonInvalidJSON
	case err != nil:
		return schemas.ReasonSchemaViolation
	case strings.TrimSpace(in.Text) == "":
		return schemas.ReasonEmptyText
	case len(in.Text) > 64<<10:
		return schemas.ReasonTextTooLong
	}
	return ""
}

func TestBadRatio(t *testing.T) {
	brokers := cluster(t)
	s, _ := SyntheticSource(DomainSupport, 5)
	cfg := baseConfig(brokers)
	cfg.Count, cfg.BadRatio = 140, 0.5
	st := mustRun(t, cfg, s)
	kinds := BadKinds()
	if st.MalformedTotal() != 70 || len(st.Malformed) != len(kinds) {
		t.Fatalf("malformed %v, want 70 over %d kinds", st.Malformed, len(kinds))
	}
	for _, k := range kinds {
		if st.Malformed[k] != 10 {
			t.Fatalf("malformed %v: want 10 of each kind", st.Malformed)
		}
	}

	recs := readAll(t, brokers, 140)
	keys := map[string]bool{}
	var good []*kgo.Record
	seen := map[string]int{}
	for _, r := range recs {
		if keys[string(r.Key)] {
			t.Fatalf("duplicate key %s", r.Key)
		}
		keys[string(r.Key)] = true
		var kind string
		for _, h := range r.Headers {
			if h.Key == HeaderMalformed {
				kind = string(h.Value)
			}
		}
		if kind == "" {
			good = append(good, r)
			continue
		}
		seen[kind]++
		if got := consumerReason(r.Value); got != DeadLetterReason[kind] {
			t.Fatalf("%s record %s would be dead-lettered as %q, want %q: %.200q", kind, r.Key, got, DeadLetterReason[kind], r.Value)
		}
		var obj map[string]any
		jsonErr := json.Unmarshal(r.Value, &obj)
		switch kind {
		case BadInvalidJSON:
			if json.Valid(r.Value) {
				t.Fatalf("invalid_json record is valid: %s", r.Value)
			}
		case BadMissingID:
			if _, ok := obj["id"]; ok || jsonErr != nil {
				t.Fatalf("missing_id record: %s", r.Value)
			}
		case BadEmptyText:
			if obj["text"] != "" {
				t.Fatalf("empty_text record: %s", r.Value)
			}
		case BadWhitespaceText:
			if s, _ := obj["text"].(string); s == "" || strings.TrimSpace(s) != "" {
				t.Fatalf("whitespace_text record: %s", r.Value)
			}
		case BadInvalidUTF8:
			if utf8.Valid(r.Value) {
				t.Fatalf("invalid_utf8 record is valid UTF-8: %q", r.Value)
			}
		case BadTooLongText:
			if s, _ := obj["text"].(string); len(s) < TooLongTextBytes {
				t.Fatalf("text_too_long record has %d bytes of text", len(s))
			}
		case BadWrongTypes:
			if _, ok := obj["id"].(float64); !ok {
				t.Fatalf("wrong_types record: %s", r.Value)
			}
		}
	}
	for _, k := range kinds {
		if seen[k] != 10 {
			t.Fatalf("kinds on the topic %v: want 10 of each", seen)
		}
	}
	if ins := decodeAll(t, good); len(ins) != 70 {
		t.Fatalf("%d well-formed records, want 70", len(ins))
	}
}

func TestBadSchedule(t *testing.T) {
	for _, tc := range []struct {
		ratio float64
		n     int
		want  int
	}{{0, 100, 0}, {0.1, 100, 10}, {0.1, 30, 3}, {0.3, 10, 3}, {0.7, 10, 7}, {1, 25, 25}, {0.25, 7, 1}, {0.05, 1000, 50}} {
		s := badSchedule{ratio: tc.ratio, kinds: BadKinds()}
		got := 0
		for n := 1; n <= tc.n; n++ {
			if _, ok := s.kind(n); ok {
				got++
			}
		}
		if got != tc.want {
			t.Errorf("ratio %v over %d: %d malformed, want %d", tc.ratio, tc.n, got, tc.want)
		}
	}
}

func TestCancelFlushesSent(t *testing.T) {
	brokers := cluster(t)
	s, _ := SyntheticSource(DomainSupport, 1)
	cfg := baseConfig(brokers)
	cfg.Rate = 500 // endless source: only ctx ends the run
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	st, err := Run(ctx, cfg, s)
	if !errors.Is(err, context.DeadlineExceeded) || !st.Interrupted {
		t.Fatalf("err %v, interrupted %v", err, st.Interrupted)
	}
	if st.Sent < 50 || st.Acked != st.Sent || st.Failed != 0 {
		t.Fatalf("stats %+v: want every sent record acked", st)
	}
	decodeAll(t, readAll(t, brokers, int(st.Sent)))
}

func TestFailuresCounted(t *testing.T) {
	brokers := cluster(t)
	cfg := baseConfig(brokers)
	cfg.Topic = "no-such-topic"
	cfg.ClientOpts = []kgo.Opt{kgo.UnknownTopicRetries(0)}
	var mu sync.Mutex
	var delivered []error
	cfg.OnDelivery = func(_ *kgo.Record, err error) {
		mu.Lock()
		delivered = append(delivered, err)
		mu.Unlock()
	}
	st, err := Run(context.Background(), cfg, Texts("a", "b", "c"))
	if err == nil || !strings.Contains(err.Error(), "3 of 3 records failed") {
		t.Fatalf("err %v", err)
	}
	if st.Sent != 3 || st.Failed != 3 || st.Acked != 0 {
		t.Fatalf("stats %+v", st)
	}
	if len(delivered) != 3 || delivered[0] == nil {
		t.Fatalf("OnDelivery got %v", delivered)
	}
}

func TestProgressAndStatsJSON(t *testing.T) {
	brokers := cluster(t)
	s, _ := SyntheticSource(DomainReviews, 1)
	cfg := baseConfig(brokers)
	cfg.Count, cfg.Rate, cfg.BadRatio = 60, 200, 0.1
	cfg.ProgressInterval = 50 * time.Millisecond
	var calls []Stats
	cfg.Progress = func(s Stats) { calls = append(calls, s) } // serial by contract
	st := mustRun(t, cfg, s)
	if len(calls) < 3 {
		t.Fatalf("%d progress calls in %v, want >= 3", len(calls), st.Elapsed)
	}
	if last := calls[len(calls)-1]; last.Acked != 60 || last.Sent != 60 {
		t.Fatalf("last progress %+v", last)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i].Sent < calls[i-1].Sent {
			t.Fatal("progress went backwards")
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"topic", "sent", "acked", "failed", "bytes", "elapsed_s", "rate", "malformed"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("summary %s lacks %q", b, k)
		}
	}
	if m["sent"] != 60.0 || m["elapsed_s"].(float64) < 0.2 {
		t.Fatalf("summary %s", b)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Topic: topic},
		{Brokers: []string{"x:1"}},
		{Brokers: []string{"x:1"}, Topic: topic, Rate: -1},
		{Brokers: []string{"x:1"}, Topic: topic, BadRatio: 1.5},
		{Brokers: []string{"x:1"}, Topic: topic, Count: -2},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("config %+v accepted", cfg)
		}
	}
}
