package retrain

import (
	"flag"
	"fmt"
	"maps"
	"slices"

	"github.com/triage-ml/triage/internal/scoring"
	"github.com/triage-ml/triage/registry"
)

// Gate decides whether a challenger may replace the champion.
type Gate struct {
	// Epsilon is how much macro-F1 the challenger may lose (default 0.005):
	// retraining on more data should not be blocked by noise.
	Epsilon float64
	// Delta is how much any one class's recall may fall (default 0.10): a
	// better average must not hide a class the model stopped finding.
	Delta float64
	// MinSupport is the evaluation rows a class needs before its recall
	// can block a challenger (default 20): with a dozen rows one miss moves
	// recall by 0.08, and the gate would refuse on noise.
	MinSupport int
}

// DefaultGate is the gate used when none is configured.
func DefaultGate() Gate { return Gate{Epsilon: 0.005, Delta: 0.10, MinSupport: 20} }

// Validate refuses a gate that would let anything through or nothing.
func (g Gate) Validate() error {
	if g.Epsilon < 0 || g.Epsilon > 1 || g.Delta < 0 || g.Delta > 1 || g.MinSupport < 0 {
		return fmt.Errorf("gate epsilon %v and delta %v must be within 0..1 (--gate-epsilon, --gate-delta)", g.Epsilon, g.Delta)
	}
	return nil
}

// Decide compares the two models' reports on the same evaluation rows. A
// nil champion (a model's first version) passes.
func (g Gate) Decide(champion *scoring.Report, challenger scoring.Report) registry.Gate {
	d := registry.Gate{Passed: true, ChallengerMacroF1: challenger.MacroF1, Epsilon: g.Epsilon, Delta: g.Delta,
		MinSupport: g.MinSupport, EvalRows: challenger.N}
	if champion == nil {
		return d
	}
	d.ChampionMacroF1 = champion.MacroF1
	if challenger.MacroF1 < champion.MacroF1-g.Epsilon {
		d.Passed = false
		d.Reasons = append(d.Reasons, fmt.Sprintf("macro-F1 %.4f is below the champion's %.4f minus %.4f",
			challenger.MacroF1, champion.MacroF1, g.Epsilon))
	}
	d.RecallDeltas = map[string]float64{}
	for _, class := range slices.Sorted(maps.Keys(champion.PerClass)) {
		was := champion.PerClass[class]
		if was.Support == 0 {
			continue // no evaluation row of that class: nothing to compare
		}
		now := challenger.PerClass[class].Recall
		delta := now - was.Recall
		d.RecallDeltas[class] = delta
		if delta < -g.Delta && was.Support >= g.MinSupport {
			d.Passed = false
			d.Reasons = append(d.Reasons, fmt.Sprintf("recall of %q fell from %.3f to %.3f (more than %.3f)", class, was.Recall, now, g.Delta))
		}
	}
	return d
}

// RegisterFlags binds the gate's thresholds to flags, with the defaults.
func (g *Gate) RegisterFlags(fs *flag.FlagSet) {
	d := DefaultGate()
	fs.Float64Var(&g.Epsilon, "gate-epsilon", d.Epsilon, "retraining gate: the challenger's macro-F1 may be at most this much below the champion's")
	fs.Float64Var(&g.Delta, "gate-delta", d.Delta, "retraining gate: no class's recall may fall by more than this")
	fs.IntVar(&g.MinSupport, "gate-min-support", d.MinSupport, "retraining gate: evaluation rows a class needs before its recall can refuse a challenger")
}
