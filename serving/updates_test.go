package serving_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/registry"
	"github.com/triage-ml/triage/serving"
)

// fast makes a client notice a topic created after it started, and new
// records, within a fraction of a second.
var fast = []kgo.Opt{kgo.MetadataMinAge(50 * time.Millisecond), kgo.FetchMaxWait(100 * time.Millisecond)}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestFollowSwapsOnAnnouncedPromotion(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	const topic = "test.model-updates"

	e := newEnv(t, 2)
	e.start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	followed := make(chan error, 1)
	go func() { followed <- e.set.Follow(ctx, brokers, topic, time.Hour, fast...) }()

	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, fast...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// Follow creates the topic, compacted, before anyone announces.
	waitFor(t, 10*time.Second, "Follow creates "+topic, func() bool {
		td, err := adm.ListTopics(ctx, topic)
		return err == nil && td.Has(topic) && td[topic].Err == nil
	})
	cfgs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe %s: %v %v", topic, err, rc.Err)
	}
	policy := ""
	for _, cfg := range rc.Configs {
		if cfg.Key == "cleanup.policy" && cfg.Value != nil {
			policy = *cfg.Value
		}
	}
	if policy != "compact" {
		t.Errorf("cleanup.policy = %q, want compact", policy)
	}

	an, err := serving.NewAnnouncer(brokers, topic, e.store, nil, fast...)
	if err != nil {
		t.Fatal(err)
	}
	defer an.Close()
	mv, err := serving.Admin{Store: e.store, Announce: an.Announce}.Promote(ctx, "support", "v2", "alice", "better f1")
	if err != nil {
		t.Fatalf("Promote: %v", err)
	}
	if mv.To != "v2" || mv.From != "v1" || mv.Kind != registry.KindPromote {
		t.Errorf("move %+v", mv)
	}
	// Reconcile is an hour away: only the event can cause the swap.
	waitFor(t, 10*time.Second, "the set swaps to v2", func() bool { return e.set.Version("support") == "v2" })
	waitFor(t, 5*time.Second, "v1 is released", func() bool { return e.open.model(t, "support/v1").closes.Load() == 1 })

	// What was published: the champion move keyed by model name.
	v2, err := e.store.Get(ctx, "support", "v2")
	if err != nil {
		t.Fatal(err)
	}
	rd, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, fast...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	fs := rd.PollFetches(pctx)
	if err := fs.Err0(); err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	recs := fs.Records()
	if len(recs) != 1 {
		t.Fatalf("%d records on %s, want 1", len(recs), topic)
	}
	var ev serving.Event
	if err := json.Unmarshal(recs[0].Value, &ev); err != nil {
		t.Fatal(err)
	}
	if string(recs[0].Key) != "support" || ev.Model != "support" || ev.Alias != registry.Champion ||
		ev.Version != "v2" || ev.Hash != v2.Hash || ev.Who != "alice" || ev.Why != "better f1" || ev.At.IsZero() {
		t.Errorf("record key %q event %+v", recs[0].Key, ev)
	}

	cancel()
	select {
	case err := <-followed:
		if err != nil {
			t.Errorf("Follow after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Follow did not return after its context was cancelled")
	}
}

func TestAdminAnnounceFailure(t *testing.T) {
	e := newEnv(t, 3)
	ctx := context.Background()
	broker := errors.New("broker unreachable")
	var announced []registry.Move
	adm := serving.Admin{Store: e.store, Announce: func(_ context.Context, mv registry.Move) error {
		announced = append(announced, mv)
		return broker
	}}

	mv, err := adm.Promote(ctx, "support", "v2", "bob", "try v2")
	if !errors.Is(err, serving.ErrNotAnnounced) || !errors.Is(err, broker) {
		t.Fatalf("Promote = %v, want ErrNotAnnounced wrapping the broker's error", err)
	}
	if mv.To != "v2" || mv.Kind != registry.KindPromote {
		t.Errorf("returned move %+v", mv)
	}
	if len(announced) != 1 || announced[0].To != "v2" {
		t.Errorf("announced %+v", announced)
	}
	if v, err := e.store.Resolve(ctx, "support", registry.Champion); err != nil || v.Version != "v2" {
		t.Errorf("registry champion = %s, %v; want v2 recorded despite the failed announcement", v.Version, err)
	}

	if _, err := adm.Rollback(ctx, "support", "bob", "back"); !errors.Is(err, serving.ErrNotAnnounced) {
		t.Errorf("Rollback = %v, want ErrNotAnnounced", err)
	}
	if v, err := e.store.Resolve(ctx, "support", registry.Champion); err != nil || v.Version != "v1" {
		t.Errorf("champion after rollback = %s, %v; want v1", v.Version, err)
	}

	// A move the registry refuses is not announced, and is not ErrNotAnnounced.
	n := len(announced)
	if _, err := adm.Promote(ctx, "support", "v9", "bob", "no such version"); err == nil ||
		errors.Is(err, serving.ErrNotAnnounced) || !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Promote of a missing version = %v, want ErrNotFound only", err)
	}
	if len(announced) != n {
		t.Error("a refused move was announced")
	}

	// Without Announce the move is only recorded.
	if _, err := (serving.Admin{Store: e.store}).Promote(ctx, "support", "v3", "bob", "quiet"); err != nil {
		t.Errorf("Promote without Announce = %v", err)
	}
	if v, _ := e.store.Resolve(ctx, "support", registry.Champion); v.Version != "v3" {
		t.Errorf("champion %s, want v3", v.Version)
	}
}
