package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/producer"
	"github.com/triage-ml/triage/schemas"
	"github.com/triage-ml/triage/snapshot"
)

// dataBroker is a kfake cluster with the feedback (2 partitions) and
// dead-letter topics; it returns the bootstrap address.
func dataBroker(t *testing.T) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "triage.feedback"), kfake.SeedTopics(1, "triage.dead-letters"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// sendFeedback publishes labels as the gateway does, plus raw values
// (rejects) keyed by their index.
func sendFeedback(t *testing.T, addr string, fbs []schemas.Feedback, raw ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sink, err := producer.NewFeedbackSink([]string{addr}, "triage.feedback", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	for _, fb := range fbs {
		if err := sink.Publish(ctx, fb); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("triage.feedback"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, v := range raw {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("raw"), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// deadLetters reads every dead letter (waiting for at least atLeast).
func deadLetters(t *testing.T, addr string, atLeast int) []schemas.DeadLetter {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("triage.dead-letters"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []schemas.DeadLetter
	deadline := time.Now().Add(5 * time.Second)
	for quiet := 0; time.Now().Before(deadline) && (len(out) < atLeast || quiet < 2); {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		n := 0
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var dl schemas.DeadLetter
			if err := schemas.Decode(schemas.KindDeadLetter, r.Value, &dl); err != nil {
				t.Errorf("dead letter: %v", err)
			}
			out = append(out, dl)
			n++
		})
		cancel()
		if n == 0 {
			quiet++
		}
	}
	return out
}

func decodeManifest(t *testing.T, stdout string) snapshot.Manifest {
	t.Helper()
	var m snapshot.Manifest
	if err := json.Unmarshal([]byte(stdout), &m); err != nil || m.ID == "" {
		t.Fatalf("not a manifest (%v):\n%s", err, stdout)
	}
	return m
}

func TestDataSnapshotListShowDiff(t *testing.T) {
	cleanEnv(t)
	addr := dataBroker(t)
	dir := t.TempDir()
	data := writeFile(t, dir, "base.csv", "text,category\n"+
		"my card has not arrived,card_arrival\n"+
		"\"refund me, please\",refund\n"+
		"hello,greeting\n")
	store := dir + "/snapshots"
	snap := func(extra ...string) snapshot.Manifest {
		t.Helper()
		args := append([]string{"data", "snapshot", "--model", "support", "--data", data, "--text-column", "text",
			"--label-column", "category", "--brokers", addr, "--store", store, "--known-models", "reviews", "--json"}, extra...)
		return decodeManifest(t, mustTriage(t, args...).stdout)
	}

	// An empty feedback topic: the base rows, with the offsets read.
	a := snap()
	if a.Rows != 3 || a.Parent != "" || a.Feedback == nil || a.Feedback.Topic != "triage.feedback" ||
		len(a.Feedback.Offsets) != 2 || a.Base.SHA256 == "" {
		t.Fatalf("first snapshot %+v", a)
	}

	created := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sendFeedback(t, addr, []schemas.Feedback{
		{ID: "t-1", Text: "My card has NOT arrived", Label: "card_delivery", Model: "support", CreatedAt: &created}, // relabels a base row
		{ID: "t-2", Text: "where is my pin", Label: "pin", Model: "support", CreatedAt: &created},                   // a new class
		{ID: "t-3", Text: "a moving film", Label: "pos", Model: "reviews", CreatedAt: &created},                     // another model's
		{ID: "t-4", Text: "older record", Label: "legacy"},                                                          // no model: counts
		{ID: "t-5", Text: "unknown model", Label: "x", Model: "nope"},                                               // dead-lettered
	}, `{"id":"raw","text":`)
	b := snap()
	if b.Parent != a.ID || b.Rows != 5 || b.LabelCounts["card_delivery"] != 1 || b.LabelCounts["card_arrival"] != 0 ||
		b.LabelCounts["pos"] != 0 || b.OriginCounts[snapshot.OriginFeedback] != 3 {
		t.Errorf("second snapshot %+v (parent want %s)", b, a.ID)
	}
	dls := deadLetters(t, addr, 2)
	codes := map[string]int{}
	for _, dl := range dls {
		codes[dl.Reason.Code]++
		if dl.Source.Topic != "triage.feedback" {
			t.Errorf("dead letter source %+v", dl.Source)
		}
	}
	if len(dls) != 2 || codes[schemas.ReasonUnknownModel] != 1 || codes[schemas.ReasonInvalidJSON] != 1 {
		t.Errorf("dead letters by reason %v (%d), want one unknown_model and one invalid_json", codes, len(dls))
	}

	// Nothing new: the same snapshot, and the rejects are not sent twice.
	if again := snap(); again.ID != b.ID || !again.CreatedAt.Equal(b.CreatedAt) {
		t.Errorf("unchanged data made snapshot %s, want %s", again.ID, b.ID)
	}
	if n := len(deadLetters(t, addr, 2)); n != 2 {
		t.Errorf("%d dead letters after a rerun, want still 2", n)
	}

	var list []snapshot.Manifest
	if err := json.Unmarshal([]byte(mustTriage(t, "data", "list", "--model", "support", "--store", store, "--json").stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != a.ID || list[1].ID != b.ID {
		t.Errorf("list: %+v", list)
	}
	table := mustTriage(t, "data", "list", "--model", "support", "--store", store).stdout
	if !strings.Contains(table, a.ID) || !strings.Contains(table, b.ID+"  ") || !strings.Contains(table, "latest") {
		t.Errorf("list table:\n%s", table)
	}

	// show takes a prefix; flags may follow it.
	shown := decodeManifest(t, mustTriage(t, "data", "show", "--model", "support", b.ID[:6], "--store", store, "--json").stdout)
	if shown.ID != b.ID || shown.SHA256 != b.SHA256 {
		t.Errorf("show: %+v", shown)
	}
	if out := mustTriage(t, "data", "show", "--model", "support", "--store", store, b.ID).stdout; !strings.Contains(out, "parent    "+a.ID) ||
		!strings.Contains(out, "card_delivery") {
		t.Errorf("show table:\n%s", out)
	}

	var d snapshot.Diff
	if err := json.Unmarshal([]byte(mustTriage(t, "data", "diff", "--model", "support", "--store", store, a.ID, b.ID, "--json").stdout), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Added) != 2 || len(d.Removed) != 0 || len(d.Relabelled) != 1 || d.Relabelled[0].After.ID != "feedback:t-1" || d.Unchanged != 2 {
		t.Errorf("diff %s: %+v", d, d)
	}
	out := mustTriage(t, "data", "diff", "--model", "support", "--store", store, a.ID, b.ID).stdout
	for _, want := range []string{"2 added, 0 removed, 1 relabelled", "card_arrival -> card_delivery", "pin", "+1"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff table lacks %q:\n%s", want, out)
		}
	}
}

func TestDataErrors(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	data := writeFile(t, dir, "base.csv", "text,label\nhello,greeting\n")
	store := dir + "/snapshots"
	wantErr(t, []string{`data: unknown command "snapshots"`, `did you mean "snapshot"`}, "data", "snapshots")
	wantErr(t, []string{"--model is required"}, "data", "list", "--store", store)
	wantErr(t, []string{"usage: triage data diff"}, "data", "diff", "--model", "support", "--store", store, "abc")
	// An unreachable broker fails, naming it, within --timeout.
	start := time.Now()
	wantErr(t, []string{"snapshot support", "127.0.0.1:1"}, "data", "snapshot", "--model", "support", "--data", data,
		"--store", store, "--brokers", "127.0.0.1:1", "--timeout", "2s")
	if time.Since(start) > 10*time.Second {
		t.Errorf("unreachable broker took %s", time.Since(start))
	}
	wantErr(t, []string{"not found"}, "data", "show", "--model", "support", "--store", store, "abcd")
	// Base data only, no Kafka.
	m := decodeManifest(t, mustTriage(t, "data", "snapshot", "--model", "support", "--data", data, "--store", store,
		"--feedback-topic", "", "--json").stdout)
	if m.Rows != 1 || m.Feedback != nil {
		t.Errorf("base-only snapshot %+v", m)
	}
}
