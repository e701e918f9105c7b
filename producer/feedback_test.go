package producer

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/schemas"
)

// The feedback sink creates its topic compacted (the latest label per id
// counts) and publishes schema-valid records keyed by id.
func TestFeedbackSinkCompactedTopic(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	sink, err := NewFeedbackSink(c.ListenAddrs(), "fb", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sink.Publish(ctx, schemas.Feedback{ID: "t1", Text: "my card is late", Label: "card_arrival", Model: "support"}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Publish(ctx, schemas.Feedback{ID: "t2", Text: ""}); err == nil {
		t.Error("an invalid feedback record was published")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, "fb")
	if err != nil || len(rcs) != 1 {
		t.Fatalf("describe fb: %v %v", rcs, err)
	}
	compacted := false
	for _, cfg := range rcs[0].Configs {
		if cfg.Key == "cleanup.policy" && cfg.Value != nil && *cfg.Value == "compact" {
			compacted = true
		}
	}
	if !compacted {
		t.Errorf("feedback topic configs %+v: not compacted", rcs[0].Configs)
	}
}
