package retrain

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/triage-ml/triage/trainer"
)

// A retrained model keeps its champion's abstention setting: the trainer's
// default for a first version, then the champion's target, or no rule when
// the champion has none.
func TestRetrainInheritsAbstention(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		first  float64 // what the first version is trained with
		second float64 // what the runner must pass the retrain after it
	}{
		{"default", 0, trainer.DefaultAbstainPrecision},
		{"custom", 0.9, 0.9},
		{"none", -1, -1},
	} {
		var mu sync.Mutex
		var seen []float64
		e := newEnv(t, func(ctx context.Context, o trainer.Options) (*trainer.Result, error) {
			mu.Lock()
			seen = append(seen, o.AbstainPrecision)
			if len(seen) == 1 {
				o.AbstainPrecision = c.first
			}
			mu.Unlock()
			return trainer.Train(ctx, o)
		})
		for range 2 {
			if _, err := e.runner.Retrain(ctx, "support", TriggerManual, "test"); err != nil {
				t.Fatal(err)
			}
		}
		// No champion yet: the runner passes 0 (the trainer's default).
		if want := []float64{0, c.second}; !slices.Equal(seen, want) {
			t.Errorf("%s: retrains got AbstainPrecision %v, want %v", c.name, seen, []float64{0, c.second})
		}
	}
}
