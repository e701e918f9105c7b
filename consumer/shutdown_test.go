package consumer

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRunReturnsOnCancel guards graceful shutdown in both delivery modes:
// after the context is cancelled Run must leave the group and return, with
// every consumed record's offset committed. At-least-once used to hang in
// Close: the last poll blocked rebalances (BlockRebalanceOnPoll) and leaving
// the group waits for them.
func TestRunReturnsOnCancel(t *testing.T) {
	for _, delivery := range []string{ExactlyOnce, AtLeastOnce} {
		t.Run(delivery, func(t *testing.T) {
			t.Parallel()
			const (
				in      = "in"
				preds   = "triage.predictions"
				n       = 50
				group   = "shutdown-test"
				stopDue = 10 * time.Second
			)
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, in, preds, "triage.dead-letters"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close)
			brokers := cluster.ListenAddrs()

			c, err := New(Config{Brokers: brokers, Group: group, Routes: map[string]Predictor{in: Passthrough{}},
				Delivery: delivery, ShutdownTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()

			prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(in))
			if err != nil {
				t.Fatal(err)
			}
			defer prod.Close()
			for i := range n {
				r := kgo.KeyStringRecord(fmt.Sprint(i), fmt.Sprintf(`{"id":"%d","text":"text %d"}`, i, i))
				if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatalf("produce: %v", err)
				}
			}

			// Cancel only once every input has its output, so the offsets
			// committed at the end must cover all n inputs.
			waitOutputs(t, brokers, preds, n)
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(stopDue):
				t.Fatalf("Run did not return within %v of cancel", stopDue)
			}

			// A fresh client sees the committed offsets at the end of the topic.
			adm := kadm.NewClient(prod)
			octx, ocancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer ocancel()
			committed, err := adm.FetchOffsets(octx, group)
			if err != nil {
				t.Fatalf("fetch committed offsets: %v", err)
			}
			ends, err := adm.ListEndOffsets(octx, in)
			if err != nil {
				t.Fatalf("list end offsets: %v", err)
			}
			total := int64(0)
			ends.Each(func(e kadm.ListedOffset) {
				total += e.Offset
				got, ok := committed.Lookup(in, e.Partition)
				if e.Offset > 0 && (!ok || got.At != e.Offset) {
					t.Errorf("partition %d: committed offset %v (found %v), want end offset %d", e.Partition, got.At, ok, e.Offset)
				}
			})
			if total != n {
				t.Errorf("%s holds %d records, want %d", in, total, n)
			}
		})
	}
}

// waitOutputs reads topic (read-committed) until it holds n records.
func waitOutputs(t *testing.T, brokers []string, topic string, n int) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d outputs on %s before the deadline", got, n, topic)
		}
		got += len(fs.Records())
	}
}
