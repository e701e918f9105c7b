package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kgo"
)

func tailCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage tail", flag.ContinueOnError)
	var g globals
	g.register(fs)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap addresses, comma-separated")
	topics := fs.String("topic", "triage.predictions", "topic to read (comma-separated for several)")
	fromBeginning := fs.Bool("from-beginning", true, "start at the oldest record; false starts at the end (new records only)")
	maxRecs := fs.Int("max", 0, "stop after this many records (0 = no limit)")
	idle := fs.Duration("timeout", 0, "stop after this long without a record (0 = run until interrupted)")
	group := fs.String("group", "", `consumer group to read in, committing offsets ("" = no group, nothing committed)`)
	withMeta := fs.Bool("with-meta", false, `print {"topic","partition","offset","key","value"} instead of the bare value`)
	return &ffcli.Command{
		Name:       "tail",
		ShortUsage: "triage tail [--brokers H:P] [--topic T] [--from-beginning=false] [--max N] [--timeout D] [--group G] [--with-meta]",
		ShortHelp:  "print committed records of a topic, one JSON line each",
		LongHelp: "Reads with read_committed isolation, so records of aborted or open transactions never show.\n" +
			"JSON values are printed compacted, anything else as a JSON string.",
		FlagSet: fs,
		Options: parseOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("tail: unexpected arguments %q", args)
			}
			if *maxRecs < 0 || *idle < 0 {
				return errors.New("tail: --max and --timeout must be >= 0")
			}
			ts := splitList(*topics)
			if len(ts) == 0 {
				return errors.New("tail: --topic is required")
			}
			bs := splitList(*brokers)
			if len(bs) == 0 {
				return errors.New("tail: --brokers is required")
			}
			reset := kgo.NewOffset().AtStart()
			if !*fromBeginning {
				reset = kgo.NewOffset().AtEnd()
			}
			opts := []kgo.Opt{
				kgo.SeedBrokers(bs...),
				kgo.ClientID("triage-tail"),
				kgo.ConsumeTopics(ts...),
				kgo.FetchIsolationLevel(kgo.ReadCommitted()),
				kgo.ConsumeResetOffset(reset),
				// A fetch in flight holds back partitions that become ready
				// after it was sent (a group's committed offsets are
				// validated after the reset offsets are listed): short
				// long-polls keep the first records of a resumed group
				// from waiting for the default 5 s.
				kgo.FetchMaxWait(250 * time.Millisecond),
			}
			t := tailer{out: bufio.NewWriter(stdout), stderr: stderr, withMeta: *withMeta, group: *group != "", warned: map[string]bool{}}
			if *group != "" {
				// Joining a group can take seconds: the idle clock restarts
				// when partitions are assigned.
				opts = append(opts, kgo.ConsumerGroup(*group),
					kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
						t.assigned.Store(time.Now().UnixNano())
					}))
			}
			cl, err := kgo.NewClient(opts...)
			if err != nil {
				return fmt.Errorf("tail: %w", err)
			}
			defer cl.Close()
			return t.run(ctx, cl, *maxRecs, *idle)
		},
	}
}

type tailer struct {
	out      *bufio.Writer
	stderr   io.Writer
	withMeta bool
	group    bool
	warned   map[string]bool
	n        int
	assigned atomic.Int64 // unix nanoseconds of the last group assignment
}

// run prints records until maxRecs were printed, idle passed without one, or
// ctx ends; none of those is an error.
func (t *tailer) run(ctx context.Context, cl *kgo.Client, maxRecs int, idle time.Duration) error {
	last := time.Now()
	sinceAssigned := func() {
		if a := time.Unix(0, t.assigned.Load()); a.After(last) {
			last = a
		}
	}
	for maxRecs == 0 || t.n < maxRecs {
		sinceAssigned()
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if idle > 0 {
			pollCtx, cancel = context.WithDeadline(ctx, last.Add(idle))
		}
		limit := -1
		if maxRecs > 0 {
			limit = maxRecs - t.n
		}
		fetches := cl.PollRecords(pollCtx, limit)
		cancel()
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return
			}
			if msg := fmt.Sprintf("%s[%d]: %v", topic, p, err); !t.warned[msg] {
				t.warned[msg] = true
				fmt.Fprintf(t.stderr, "tail: %s\n", msg)
			}
		})
		got := 0
		var werr error
		fetches.EachRecord(func(r *kgo.Record) {
			if werr == nil {
				werr = t.print(r)
				got++
			}
		})
		if werr == nil {
			werr = t.out.Flush()
		}
		if werr != nil {
			return fmt.Errorf("tail: write: %w", werr)
		}
		if fetches.IsClientClosed() || ctx.Err() != nil {
			break // after printing: a group commits what was polled
		}
		sinceAssigned()
		if got > 0 {
			last = time.Now()
		} else if idle > 0 && time.Since(last) >= idle {
			break
		}
	}
	if t.group {
		// With a group, commit what was printed before leaving, so a
		// following `tail --group G` goes on from here.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := cl.CommitUncommittedOffsets(cctx); err != nil {
			fmt.Fprintf(t.stderr, "tail: commit offsets: %v\n", err)
		}
	}
	return nil
}

// print writes one record as a line: its value, or the value with metadata.
func (t *tailer) print(r *kgo.Record) error {
	t.n++
	val := jsonValue(r.Value)
	if !t.withMeta {
		_, err := fmt.Fprintf(t.out, "%s\n", val)
		return err
	}
	var key json.RawMessage = []byte("null")
	if r.Key != nil {
		key, _ = json.Marshal(string(r.Key))
	}
	b, err := json.Marshal(struct {
		Topic     string          `json:"topic"`
		Partition int32           `json:"partition"`
		Offset    int64           `json:"offset"`
		Key       json.RawMessage `json:"key"`
		Value     json.RawMessage `json:"value"`
	}{r.Topic, r.Partition, r.Offset, key, val})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(t.out, "%s\n", b)
	return err
}

// jsonValue is v compacted if it is JSON (which is UTF-8), else v as a JSON
// string, invalid UTF-8 replaced by U+FFFD; a null value (tombstone) is null.
func jsonValue(v []byte) json.RawMessage {
	if v == nil {
		return json.RawMessage("null")
	}
	var buf bytes.Buffer
	if utf8.Valid(v) && json.Valid(v) && json.Compact(&buf, v) == nil {
		return buf.Bytes()
	}
	s, _ := json.Marshal(string(v))
	return s
}
