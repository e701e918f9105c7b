package review

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/schemas"
)

func TestQueueOrderKeepAndDone(t *testing.T) {
	q := New(3, nil)
	for i, m := range []float64{0.05, 0.01, 0.08, 0.02} {
		q.Add(schemas.Review{ID: fmt.Sprint(i), Margin: m, Model: schemas.ModelRef{Name: []string{"support", "reviews"}[i%2]}})
	}
	got := q.List("", 0)
	if len(got) != 3 || got[0].ID != "1" || got[1].ID != "3" || got[2].ID != "2" {
		t.Fatalf("List = %+v: want the 3 newest, smallest margin first (1, 3, 2)", got)
	}
	if got := q.List("support", 0); len(got) != 1 || got[0].ID != "2" {
		t.Errorf("List(support) = %+v", got)
	}
	q.Done("1")
	q.Add(schemas.Review{ID: "1", Margin: 0.001}) // labelled: never listed again
	if got := q.List("", 1); len(got) != 1 || got[0].ID != "3" {
		t.Errorf("after Done: %+v", got)
	}
}

func TestFollow(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "rq"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("rq"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, _ := json.Marshal(schemas.Review{ID: "a", Text: "card or refund?", Margin: 0.03})
	for _, val := range [][]byte{[]byte("not json"), v} {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: val}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	q := New(0, nil)
	done := make(chan error, 1)
	fctx, stop := context.WithCancel(ctx)
	go func() { done <- q.Follow(fctx, c.ListenAddrs(), "rq") }()
	for len(q.List("", 0)) == 0 {
		if ctx.Err() != nil {
			t.Fatal("review item never read")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := q.List("", 0); len(got) != 1 || got[0].Text != "card or refund?" {
		t.Errorf("queue %+v", got)
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("Follow: %v", err)
	}
}
