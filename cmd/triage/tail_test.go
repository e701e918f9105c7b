package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// produceRaw writes values to topic t; with txn set, inside one transaction
// that is committed or aborted.
func produceRaw(t *testing.T, addr string, txn string, commit bool, values ...string) {
	t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("t")}
	if txn != "" {
		opts = append(opts, kgo.TransactionalID(txn))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if txn != "" {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
	}
	for i, v := range values {
		rec := &kgo.Record{Key: []byte(txn + "-" + string(rune('a'+i))), Value: []byte(v)}
		if v == "<nil>" {
			rec.Value = nil
		}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if txn != "" {
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
}

func tailLines(t *testing.T, args ...string) []string {
	t.Helper()
	out, _ := mustStream(t, "", append([]string{"tail"}, args...)...)
	if out == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

func TestTailShowsOnlyCommitted(t *testing.T) {
	addr := streamBroker(t)
	produceRaw(t, addr, "", false, `{"n": 1}`, `{ "n" : 2,
	"nested": {"a": [1, 2]} }`, "plain text", "<nil>")
	produceRaw(t, addr, "tx-abort", false, `{"aborted": 1}`, `{"aborted": 2}`, `{"aborted": 3}`)
	produceRaw(t, addr, "tx-commit", true, `{"committed": 1}`, `{"committed": 2}`)
	produceRaw(t, addr, "tx-abort2", false, `{"aborted": 4}`)

	got := tailLines(t, "--brokers", addr, "--topic", "t", "--timeout", "700ms")
	want := []string{`{"n":1}`, `{"n":2,"nested":{"a":[1,2]}}`, `"plain text"`, `null`, `{"committed":1}`, `{"committed":2}`}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("tail printed\n%s\nwant (any order)\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// --with-meta wraps each value; offsets and keys are the records' own.
	recs := tailMeta(t, addr, 6)
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Topic != "t" || r.Partition < 0 || r.Partition > 2 || r.Offset < 0 {
			t.Fatalf("meta %+v", r)
		}
		k := "<nil>"
		if r.Key != nil {
			k = *r.Key
		}
		seen[k] = true
		if strings.Contains(string(r.Value), "aborted") {
			t.Fatalf("aborted record shown: %s", r.Value)
		}
	}
	for _, k := range []string{"-a", "-b", "-c", "-d", "tx-commit-a", "tx-commit-b"} {
		if !seen[k] {
			t.Fatalf("key %q missing from %v", k, seen)
		}
	}
}

func TestTailMaxAndFromEnd(t *testing.T) {
	addr := streamBroker(t)
	var old []string
	for i := range 10 {
		old = append(old, `{"old":`+string(rune('0'+i))+`}`)
	}
	produceRaw(t, addr, "", false, old...)

	// --max stops after exactly N records, without any --timeout.
	start := time.Now()
	got := tailLines(t, "--brokers", addr, "--topic", "t", "--max", "4")
	if len(got) != 4 || time.Since(start) > 5*time.Second {
		t.Fatalf("--max 4 printed %d lines in %v", len(got), time.Since(start))
	}
	for _, l := range got {
		if !strings.HasPrefix(l, `{"old":`) {
			t.Fatalf("line %q", l)
		}
	}

	// --from-beginning=false shows only records produced after it started:
	// keep producing new ones until it has seen one.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	var out, stderr string
	var err error
	go func() {
		defer close(done)
		out, stderr, err = streamCmd(ctx, "", "tail", "--brokers", addr, "--topic", "t", "--from-beginning=false", "--max", "1")
	}()
	cl, cerr := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("t"))
	if cerr != nil {
		t.Fatal(cerr)
	}
	defer cl.Close()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-time.After(50 * time.Millisecond):
			if perr := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(`{"new":true}`)}).FirstErr(); perr != nil {
				t.Fatal(perr)
			}
		}
	}
	if err != nil || out != "{\"new\":true}\n" {
		t.Fatalf("--from-beginning=false: out %q, err %v, stderr %s", out, err, stderr)
	}
}

func TestTailInterruptAndIdle(t *testing.T) {
	addr := streamBroker(t)
	// An empty topic with --timeout stops after the idle time.
	start := time.Now()
	if got := tailLines(t, "--brokers", addr, "--topic", "t", "--timeout", "300ms"); len(got) != 0 {
		t.Fatalf("empty topic printed %q", got)
	}
	if took := time.Since(start); took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("--timeout 300ms stopped after %v", took)
	}
	// Without --max or --timeout it runs until interrupted; that is no error.
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	if _, _, err := streamCmd(ctx, "", "tail", "--brokers", addr, "--topic", "t"); err != nil {
		t.Fatalf("interrupted tail: %v", err)
	}
}

func TestTailGroupResumes(t *testing.T) {
	addr := streamBroker(t)
	var vals []string
	for i := range 6 {
		vals = append(vals, `{"i":`+string(rune('0'+i))+`}`)
	}
	produceRaw(t, addr, "", false, vals...)
	first := tailLines(t, "--brokers", addr, "--topic", "t", "--group", "g", "--max", "4")
	// The idle time counts from the group assignment, not from the start.
	second := tailLines(t, "--brokers", addr, "--topic", "t", "--group", "g", "--timeout", "1s")
	all := append(append([]string{}, first...), second...)
	slices.Sort(all)
	if len(first) != 4 || !slices.Equal(all, vals) {
		t.Fatalf("group reads %q then %q, want %q once each", first, second, vals)
	}
}

func TestJSONValue(t *testing.T) {
	for in, want := range map[string]string{
		`{"a": 1}`:         `{"a":1}`,
		` [1, 2] `:         `[1,2]`,
		`42`:               `42`,
		`not json`:         `"not json"`,
		"bad \xff":         `"bad \ufffd"`,
		"{\"a\":\"\xff\"}": `"{\"a\":\"\ufffd\"}"`,
		``:                 `""`,
	} {
		got := string(jsonValue([]byte(in)))
		if got != want {
			t.Errorf("jsonValue(%q) = %s, want %s", in, got, want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("jsonValue(%q) = %s: invalid JSON", in, got)
		}
	}
	if string(jsonValue(nil)) != "null" {
		t.Error("nil value is not null")
	}
}
