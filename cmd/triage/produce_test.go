package main

// Tests of `triage produce` and `triage tail` against an in-process kfake
// broker. The commands run through a local root command (main.go registers
// them for the binary).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/triage-ml/triage/producer"
	"github.com/triage-ml/triage/schemas"
)

// streamBroker is a one-broker kfake cluster with topic "t" (3 partitions);
// it returns the bootstrap address.
func streamBroker(t *testing.T) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "t"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

// streamCmd runs `triage produce|tail ARGS` in-process with stdin as
// produce's standard input.
func streamCmd(ctx context.Context, stdin string, args ...string) (stdout, stderr string, err error) {
	var out, errb bytes.Buffer
	root := &ffcli.Command{
		Name:        "triage",
		Subcommands: []*ffcli.Command{produceCommand(&out, &errb), tailCommand(&out, &errb)},
	}
	for _, c := range root.Subcommands {
		c.FlagSet.SetOutput(&errb)
	}
	old := produceStdin
	produceStdin = strings.NewReader(stdin)
	defer func() { produceStdin = old }()
	if err := root.Parse(args); err != nil {
		return out.String(), errb.String(), err
	}
	err = root.Run(ctx)
	return out.String(), errb.String(), err
}

func mustStream(t *testing.T, stdin string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	stdout, stderr, err := streamCmd(ctx, stdin, args...)
	if err != nil {
		t.Fatalf("triage %s: %v\nstderr: %s", strings.Join(args, " "), err, stderr)
	}
	if ctx.Err() != nil {
		t.Fatalf("triage %s: did not stop by itself", strings.Join(args, " "))
	}
	return stdout, stderr
}

type produceSummary struct {
	producer.Stats
	Mode      string `json:"mode"`
	ID        string `json:"id"`
	Partition *int32 `json:"partition"`
	Offset    *int64 `json:"offset"`
}

func decodeSummary(t *testing.T, stdout string) produceSummary {
	t.Helper()
	var s produceSummary
	if err := json.Unmarshal([]byte(stdout), &s); err != nil || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("summary is not one JSON line: %v\n%s", err, stdout)
	}
	return s
}

// metaLine is a `tail --with-meta` line.
type metaLine struct {
	Topic     string          `json:"topic"`
	Partition int32           `json:"partition"`
	Offset    int64           `json:"offset"`
	Key       *string         `json:"key"`
	Value     json.RawMessage `json:"value"`
}

func tailMeta(t *testing.T, addr string, want int, extra ...string) []metaLine {
	t.Helper()
	args := append([]string{"tail", "--brokers", addr, "--topic", "t", "--with-meta", "--timeout", "700ms"}, extra...)
	out, _ := mustStream(t, "", args...)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if out == "" {
		lines = nil
	}
	if len(lines) != want {
		t.Fatalf("tail printed %d lines, want %d:\n%s", len(lines), want, out)
	}
	var recs []metaLine
	for _, l := range lines {
		if !utf8.ValidString(l) {
			t.Fatalf("tail line is not UTF-8: %q", l)
		}
		var m metaLine
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("tail line %q: %v", l, err)
		}
		recs = append(recs, m)
	}
	return recs
}

// inputsByKey decodes tailed records as inputs keyed by their id.
func inputsByKey(t *testing.T, recs []metaLine) map[string]schemas.Input {
	t.Helper()
	out := map[string]schemas.Input{}
	for _, r := range recs {
		in, err := schemas.DecodeInput(r.Value)
		if err != nil {
			t.Fatalf("%s: %v", r.Value, err)
		}
		if r.Key == nil || *r.Key != in.ID {
			t.Fatalf("key %v, id %q", r.Key, in.ID)
		}
		if _, dup := out[in.ID]; dup {
			t.Fatalf("duplicate id %s", in.ID)
		}
		out[in.ID] = in
	}
	return out
}

func TestProduceFile(t *testing.T) {
	addr := streamBroker(t)
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("ticket,body,queue\n")
	for i := range 40 {
		fmt.Fprintf(&b, "Q%d,\"refund for order %d, please\",billing\n", i, i)
	}
	csv := writeFile(t, dir, "q.csv", b.String())

	out, stderr := mustStream(t, "", "produce", "--brokers", addr, "--topic", "t", "--file", csv, "--text-column", "body", "--id-column", "ticket")
	s := decodeSummary(t, out)
	if s.Sent != 40 || s.Acked != 40 || s.Failed != 0 || s.Mode != "file" || s.Topic != "t" || s.Bytes <= 0 {
		t.Fatalf("summary %+v", s)
	}
	// Not a terminal: plain progress lines, the last one final.
	if strings.Contains(stderr, "\r") || !strings.Contains(stderr, "acked 40, failed 0") {
		t.Fatalf("progress on stderr: %q", stderr)
	}
	ins := inputsByKey(t, tailMeta(t, addr, 40))
	for i := range 40 {
		in := ins[fmt.Sprintf("Q%d", i)]
		if in.Text != fmt.Sprintf("refund for order %d, please", i) || in.Source != "file:q.csv" {
			t.Fatalf("Q%d: %+v", i, in)
		}
	}

	// A count above the rows loops over the file, with unique ids.
	out, _ = mustStream(t, "", "produce", "--brokers", addr, "--topic", "t", "--file", csv, "--text-column", "body",
		"--count", "100", "--id-prefix", "loop", "--progress=false")
	if s := decodeSummary(t, out); s.Sent != 100 || s.Acked != 100 {
		t.Fatalf("looped summary %+v", s)
	}
	ins = inputsByKey(t, tailMeta(t, addr, 140))
	for n := 1; n <= 100; n++ {
		if in, ok := ins[fmt.Sprintf("loop-%d", n)]; !ok || in.Text != fmt.Sprintf("refund for order %d, please", (n-1)%40) {
			t.Fatalf("loop-%d: %+v", n, in)
		}
	}
}

func TestProduceSyntheticStdinText(t *testing.T) {
	addr := streamBroker(t)
	out, _ := mustStream(t, "", "produce", "--brokers", addr, "--topic", "t", "--synthetic", "--count", "50", "--seed", "9", "--id-prefix", "syn")
	if s := decodeSummary(t, out); s.Acked != 50 || s.Mode != "synthetic" {
		t.Fatalf("synthetic summary %+v", s)
	}
	out, _ = mustStream(t, "first line\n\nsecond line\r\nthird line\n", "produce", "--brokers", addr, "--topic", "t", "--stdin", "--id-prefix", "in")
	if s := decodeSummary(t, out); s.Acked != 3 || s.Mode != "stdin" {
		t.Fatalf("stdin summary %+v", s)
	}
	out, _ = mustStream(t, "", "produce", "--brokers", addr, "--topic", "t", "--text", "my card hasn't arrived", "--id", "card-1")
	s := decodeSummary(t, out)
	if s.Acked != 1 || s.ID != "card-1" || s.Partition == nil || s.Offset == nil {
		t.Fatalf("text summary %s", out)
	}

	recs := tailMeta(t, addr, 54)
	ins := inputsByKey(t, recs)
	for n := 1; n <= 50; n++ {
		if in := ins[fmt.Sprintf("syn-%d", n)]; in.Source != "synthetic" || in.Text == "" {
			t.Fatalf("syn-%d: %+v", n, in)
		}
	}
	for i, want := range []string{"first line", "second line", "third line"} {
		if in := ins[fmt.Sprintf("in-%d", i+1)]; in.Text != want || in.Source != "stdin" {
			t.Fatalf("in-%d: %+v", i+1, in)
		}
	}
	if in := ins["card-1"]; in.Text != "my card hasn't arrived" || in.Source != "cli" {
		t.Fatalf("card-1: %+v", in)
	}
	for _, r := range recs {
		if *r.Key == "card-1" && (r.Partition != *s.Partition || r.Offset != *s.Offset) {
			t.Fatalf("card-1 at %d/%d, summary says %d/%d", r.Partition, r.Offset, *s.Partition, *s.Offset)
		}
	}

	// Same seed, same texts.
	addr2 := streamBroker(t)
	mustStream(t, "", "produce", "--brokers", addr2, "--topic", "t", "--synthetic", "--count", "50", "--seed", "9", "--id-prefix", "syn")
	again := inputsByKey(t, tailMeta(t, addr2, 50))
	for id, in := range again {
		if ins[id].Text != in.Text {
			t.Fatalf("%s: %q then %q with the same seed", id, ins[id].Text, in.Text)
		}
	}
}

func TestProduceRateAndBadRatio(t *testing.T) {
	addr := streamBroker(t)
	start := time.Now()
	out, _ := mustStream(t, "", "produce", "--brokers", addr, "--topic", "t", "--synthetic", "--count", "200", "--rate", "1000",
		"--bad-ratio", "0.35", "--id-prefix", "b")
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("200 records at --rate 1000 took %v", took)
	}
	s := decodeSummary(t, out)
	if s.Acked != 200 || s.MalformedTotal() != 70 || len(s.Malformed) != len(producer.BadKinds()) {
		t.Fatalf("summary %s", out)
	}
	recs := tailMeta(t, addr, 200)
	var good []metaLine
	var strings_, invalid int
	for _, r := range recs {
		if _, err := schemas.DecodeInput(r.Value); err == nil {
			good = append(good, r)
		} else {
			invalid++
		}
		if r.Value[0] == '"' { // invalid JSON and invalid UTF-8 show as JSON strings
			strings_++
		}
	}
	// Whitespace-only and over-long texts pass the schema (the consumer
	// rejects them later); the other five kinds do not.
	if len(good) != 130+10+10 || invalid != 50 || strings_ != 20 {
		t.Fatalf("%d schema-valid, %d invalid, %d shown as strings", len(good), invalid, strings_)
	}
}

func TestProduceErrors(t *testing.T) {
	dir := t.TempDir()
	csv := writeFile(t, dir, "a.csv", "text\nhello\n")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"produce"}, "exactly one of"},
		{[]string{"produce", "--synthetic", "--stdin"}, "got 2"},
		{[]string{"produce", "--file", csv, "--id", "x"}, "--id goes with --text"},
		{[]string{"produce", "--text", "  "}, "--text is empty"},
		{[]string{"produce", "--synthetic", "--bad-ratio", "2"}, "bad ratio"},
		{[]string{"produce", "--synthetic", "--rate", "-1"}, "rate"},
		{[]string{"produce", "--synthetic", "--synthetic-kind", "tweets"}, "synthetic domain"},
		{[]string{"produce", "--file", filepath.Join(dir, "none.csv")}, "none.csv"},
		{[]string{"produce", "--file", csv, "--text-column", "body"}, `no column "body"`},
		{[]string{"tail", "--max", "-1"}, "--max"},
		{[]string{"tail", "--topic", ""}, "--topic"},
	} {
		_, _, err := streamCmd(context.Background(), "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestProduceEnv(t *testing.T) {
	root := &ffcli.Command{Name: "triage", Subcommands: []*ffcli.Command{produceCommand(io.Discard, io.Discard), tailCommand(io.Discard, io.Discard)}}
	env := map[string]string{"TRIAGE_TOPIC": "triage.reviews", "TRIAGE_RATE": "50", "TRIAGE_MAX": "3"}
	got := withEnv(root, []string{"produce", "--rate", "10"}, func(k string) string { return env[k] })
	if strings.Join(got, " ") != "produce --rate=50 --topic=triage.reviews --rate 10" {
		t.Fatalf("withEnv: %q", got)
	}
}
