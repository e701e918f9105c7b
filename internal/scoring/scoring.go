// Package scoring computes classification metrics: accuracy, macro-F1 and
// per-class precision/recall/F1.
package scoring

import "fmt"

// ClassMetrics are one label's figures.
type ClassMetrics struct {
	Precision float64 `json:"precision"`
	Recall    float64 `json:"recall"`
	F1        float64 `json:"f1"`
	Support   int     `json:"support"`
}

// Report is the result of comparing predictions with gold labels.
type Report struct {
	N        int                     `json:"n"`
	Accuracy float64                 `json:"accuracy"`
	MacroF1  float64                 `json:"macro_f1"`
	PerClass map[string]ClassMetrics `json:"per_class"`
}

// Score compares gold and predicted label indices over the label set.
// Macro-F1 averages over labels with support or predictions (as
// scikit-learn does over the labels present), so a label absent from both
// does not count as a zero.
func Score(labels []string, gold, pred []int) (Report, error) {
	if len(gold) != len(pred) {
		return Report{}, fmt.Errorf("score: %d gold labels but %d predictions", len(gold), len(pred))
	}
	k := len(labels)
	tp, fp, fn := make([]int, k), make([]int, k), make([]int, k)
	correct := 0
	for i := range gold {
		g, p := gold[i], pred[i]
		if g < 0 || g >= k || p < 0 || p >= k {
			return Report{}, fmt.Errorf("score: label index out of range at %d", i)
		}
		if g == p {
			tp[g]++
			correct++
		} else {
			fp[p]++
			fn[g]++
		}
	}
	r := Report{N: len(gold), PerClass: make(map[string]ClassMetrics, k)}
	if r.N > 0 {
		r.Accuracy = float64(correct) / float64(r.N)
	}
	var sumF1 float64
	var present int
	for c, name := range labels {
		m := ClassMetrics{Support: tp[c] + fn[c]}
		if tp[c]+fp[c] > 0 {
			m.Precision = float64(tp[c]) / float64(tp[c]+fp[c])
		}
		if m.Support > 0 {
			m.Recall = float64(tp[c]) / float64(m.Support)
		}
		if m.Precision+m.Recall > 0 {
			m.F1 = 2 * m.Precision * m.Recall / (m.Precision + m.Recall)
		}
		if m.Support > 0 || tp[c]+fp[c] > 0 {
			sumF1 += m.F1
			present++
		}
		r.PerClass[name] = m
	}
	if present > 0 {
		r.MacroF1 = sumF1 / float64(present)
	}
	return r, nil
}
