package snapshot

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/triage-ml/triage/internal/dataset"
)

func at(minute int) time.Time { return time.Date(2026, 3, 1, 12, minute, 0, 0, time.UTC) }

func TestSnapshotBuildDedupe(t *testing.T) {
	base := []dataset.Example{
		{Text: "My card", Label: "card_arrival"},
		{Text: "  my   CARD ", Label: "card_other"}, // same normalised text: the later base row wins
		{Text: "Ｒefund please", Label: "refund"},    // NFKC: fullwidth R
		{Text: "hello", Label: "greet"},
		{Text: "untouched", Label: "misc"},
	}
	labels := []Label{
		{ID: "f1", Text: "REFUND PLEASE", Label: "refund_old", Time: at(1), Partition: 0, Offset: 0},
		{ID: "f1", Text: "refund please", Label: "refund_new", Time: at(2), Partition: 0, Offset: 5}, // same id: latest wins
		{ID: "f2", Text: "brand new text", Label: "new_class", Time: at(1), Partition: 1, Offset: 0}, // a label the model lacks: kept
		{ID: "f3", Text: "hello", Label: "greeting", Time: at(3), Partition: 1, Offset: 1},
		{ID: "f4", Text: "HELLO", Label: "hi", Time: at(2), Partition: 0, Offset: 9}, // higher offset, but older than f3
	}
	want := Rows{
		{ID: "base:1", Text: "  my   CARD ", Label: "card_other", Origin: OriginBase},
		{ID: "base:4", Text: "untouched", Label: "misc", Origin: OriginBase},
		{ID: "feedback:f2", Text: "brand new text", Label: "new_class", Origin: OriginFeedback},
		{ID: "feedback:f1", Text: "refund please", Label: "refund_new", Origin: OriginFeedback},
		{ID: "feedback:f3", Text: "hello", Label: "greeting", Origin: OriginFeedback},
	}
	got := Build(base, labels)
	if !slices.Equal(got, want) {
		t.Fatalf("Build:\n got %v\nwant %v", got, want)
	}
	// The order labels arrive in does not change the result (nor, so, the
	// snapshot id).
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := slices.Clone(labels)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := Build(base, shuffled); !slices.Equal(got, want) {
			t.Fatalf("Build of shuffled labels:\n got %v\nwant %v", got, want)
		}
	}
	if got := Build(base, nil); len(got) != 4 || got[0].ID != "base:1" {
		t.Errorf("Build without feedback: %v", got)
	}
	if c := want.LabelCounts(); c["new_class"] != 1 || len(c) != 5 {
		t.Errorf("LabelCounts = %v", c)
	}
}

func TestFeedbackFor(t *testing.T) {
	fb := Feedback{Labels: map[string][]Label{
		"support": {{ID: "a", Time: at(2)}},
		"reviews": {{ID: "b", Time: at(1)}},
		"":        {{ID: "c", Time: at(1)}},
	}}
	ids := func(ls []Label) (out []string) {
		for _, l := range ls {
			out = append(out, l.ID)
		}
		return out
	}
	// Records naming no model count for whichever model asks.
	if got := ids(fb.For("support")); !slices.Equal(got, []string{"c", "a"}) {
		t.Errorf("For(support) = %v", got)
	}
	if got := ids(fb.For("other")); !slices.Equal(got, []string{"c"}) {
		t.Errorf("For(other) = %v", got)
	}
	fb.Rejects = []Reject{{Partition: 0, Offset: 3}, {Partition: 0, Offset: 7}, {Partition: 1, Offset: 0}}
	if got := fb.RejectsSince(map[int32]int64{0: 5}); len(got) != 2 || got[0].Offset != 7 || got[1].Partition != 1 {
		t.Errorf("RejectsSince = %+v", got)
	}
}
