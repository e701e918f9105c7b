package trainer

import (
	"testing"

	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/finetune"
)

// The fine-tuned layer becomes the Triage head: feature 0 is padding, the
// embedding enters as features 1..dim, and the scores are the layer's.
func TestHeadModelScoresAsTheLayer(t *testing.T) {
	h := &finetune.Head{Labels: 2, Hidden: 3, W: []float32{1, 2, 3, 4, 5, 6}, B: []float32{0.5, -1}}
	m := headModel(h)
	emb := []float32{1, 0, -1, 0.5, 2, 0}
	x := featurizer.AppendDense(make([]featurizer.Vector, 2), emb, 3, 1, 1)
	want := h.Logits(emb)
	for i, v := range x {
		for c := range 2 {
			got := m.B[c]
			for k, id := range v.IDs {
				got += m.W[int(id)*m.NumClasses+c] * v.Weights[k]
			}
			if d := got - want[i][c]; d > 1e-6 || d < -1e-6 {
				t.Errorf("row %d class %d: head %v, layer %v", i, c, got, want[i][c])
			}
		}
	}
}
