package scoring

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

const eps = 1e-12

func near(a, b float64) bool { return math.Abs(a-b) < eps }

// TestScoreHandComputed checks every figure against values worked out by
// hand, which are also what scikit-learn gives for the same input:
//
//	y_true = ["a","a","a","b","b","c","c","c","c","a"]
//	y_pred = ["a","b","a","b","c","c","c","a","c","a"]
//	accuracy_score                        -> 0.7
//	precision_recall_fscore_support(average=None, labels=["a","b","c"])
//	    precision [0.75, 0.5, 0.75]
//	    recall    [0.75, 0.5, 0.75]
//	    f1        [0.75, 0.5, 0.75]
//	    support   [4, 2, 4]
//	f1_score(average="macro")             -> 2/3
//
// Confusion (rows gold, columns predicted, order a b c):
//
//	a: 3 1 0    tp_a=3 fp_a=1 (c->a) fn_a=1
//	b: 0 1 1    tp_b=1 fp_b=1 (a->b) fn_b=1
//	c: 1 0 3    tp_c=3 fp_c=1 (b->c) fn_c=1
func TestScoreHandComputed(t *testing.T) {
	labels := []string{"a", "b", "c"}
	gold := []int{0, 0, 0, 1, 1, 2, 2, 2, 2, 0}
	pred := []int{0, 1, 0, 1, 2, 2, 2, 0, 2, 0}
	r, err := Score(labels, gold, pred)
	if err != nil {
		t.Fatal(err)
	}
	if r.N != 10 {
		t.Errorf("N = %d, want 10", r.N)
	}
	if !near(r.Accuracy, 0.7) {
		t.Errorf("accuracy = %v, want 0.7", r.Accuracy)
	}
	want := map[string]ClassMetrics{
		"a": {Precision: 0.75, Recall: 0.75, F1: 0.75, Support: 4},
		"b": {Precision: 0.5, Recall: 0.5, F1: 0.5, Support: 2},
		"c": {Precision: 0.75, Recall: 0.75, F1: 0.75, Support: 4},
	}
	checkPerClass(t, r, want)
	if !near(r.MacroF1, 2.0/3.0) {
		t.Errorf("macro_f1 = %v, want 2/3", r.MacroF1)
	}
}

// TestScoreUnequalPrecisionRecall uses a case where precision and recall
// differ, so a swapped formula would be caught:
//
//	y_true = [0,0,0,0,1,1,2,2]
//	y_pred = [0,0,1,1,1,0,2,1]
//	label 0: tp=2 fp=1 fn=2 -> P=2/3 R=1/2 F1=2*(2/3)(1/2)/(2/3+1/2)=4/7
//	label 1: tp=1 fp=3 fn=1 -> P=1/4 R=1/2 F1=2*(1/4)(1/2)/(3/4)=1/3
//	label 2: tp=1 fp=0 fn=1 -> P=1   R=1/2 F1=2/3
//	accuracy = 4/8; macro F1 = (4/7 + 1/3 + 2/3)/3 = 11/21
//
// (scikit-learn: f1_score(average="macro") = 0.5238095238095238 = 11/21.)
func TestScoreUnequalPrecisionRecall(t *testing.T) {
	labels := []string{"x", "y", "z"}
	r, err := Score(labels, []int{0, 0, 0, 0, 1, 1, 2, 2}, []int{0, 0, 1, 1, 1, 0, 2, 1})
	if err != nil {
		t.Fatal(err)
	}
	if !near(r.Accuracy, 0.5) {
		t.Errorf("accuracy = %v, want 0.5", r.Accuracy)
	}
	checkPerClass(t, r, map[string]ClassMetrics{
		"x": {Precision: 2.0 / 3, Recall: 0.5, F1: 4.0 / 7, Support: 4},
		"y": {Precision: 0.25, Recall: 0.5, F1: 1.0 / 3, Support: 2},
		"z": {Precision: 1, Recall: 0.5, F1: 2.0 / 3, Support: 2},
	})
	if !near(r.MacroF1, 11.0/21) {
		t.Errorf("macro_f1 = %v, want 11/21", r.MacroF1)
	}
}

// TestScoreAbsentAndNeverPredicted covers the zero-division corners:
//
//	labels a b c d; y_true = [0,0,1,1]; y_pred = [0,0,0,0]
//	a: tp=2 fp=2 fn=0 -> P=1/2 R=1 F1=2/3
//	b: tp=0 fp=0 fn=2 -> P=0 (never predicted) R=0 F1=0, still averaged
//	c, d: no support and never predicted -> all zero, left out of the mean
//	macro F1 = (2/3 + 0)/2 = 1/3
//
// That matches scikit-learn's f1_score(average="macro") without an explicit
// labels= argument (it averages over labels present in y_true or y_pred).
func TestScoreAbsentAndNeverPredicted(t *testing.T) {
	r, err := Score([]string{"a", "b", "c", "d"}, []int{0, 0, 1, 1}, []int{0, 0, 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	if !near(r.Accuracy, 0.5) {
		t.Errorf("accuracy = %v, want 0.5", r.Accuracy)
	}
	checkPerClass(t, r, map[string]ClassMetrics{
		"a": {Precision: 0.5, Recall: 1, F1: 2.0 / 3, Support: 2},
		"b": {Support: 2},
		"c": {},
		"d": {},
	})
	if !near(r.MacroF1, 1.0/3) {
		t.Errorf("macro_f1 = %v, want 1/3 (labels c, d absent from both sides must not count)", r.MacroF1)
	}
	for _, m := range r.PerClass {
		for _, v := range []float64{m.Precision, m.Recall, m.F1} {
			if math.IsNaN(v) {
				t.Fatalf("NaN in %+v", m)
			}
		}
	}
}

func TestScorePerfect(t *testing.T) {
	r, err := Score([]string{"neg", "pos"}, []int{0, 1, 1, 0}, []int{0, 1, 1, 0})
	if err != nil {
		t.Fatal(err)
	}
	if r.Accuracy != 1 || r.MacroF1 != 1 || r.N != 4 {
		t.Fatalf("perfect predictions: %+v", r)
	}
	checkPerClass(t, r, map[string]ClassMetrics{
		"neg": {Precision: 1, Recall: 1, F1: 1, Support: 2},
		"pos": {Precision: 1, Recall: 1, F1: 1, Support: 2},
	})
}

func TestScoreEmpty(t *testing.T) {
	r, err := Score([]string{"a", "b"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.N != 0 || r.Accuracy != 0 || r.MacroF1 != 0 || math.IsNaN(r.Accuracy) || math.IsNaN(r.MacroF1) {
		t.Fatalf("empty input: %+v", r)
	}
	if len(r.PerClass) != 2 {
		t.Fatalf("per_class has %d labels, want 2", len(r.PerClass))
	}
}

func TestScoreMismatchedLengths(t *testing.T) {
	_, err := Score([]string{"a", "b"}, []int{0, 1, 1}, []int{0, 1})
	if err == nil {
		t.Fatal("want an error for 3 gold labels and 2 predictions")
	}
	if !strings.Contains(err.Error(), "3 gold labels but 2 predictions") {
		t.Fatalf("error %q does not give both lengths", err)
	}
}

func TestScoreIndexOutOfRange(t *testing.T) {
	labels := []string{"a", "b"}
	for _, tc := range []struct {
		name       string
		gold, pred []int
		at         string
	}{
		{"gold too big", []int{0, 2}, []int{0, 1}, "at 1"},
		{"pred too big", []int{0, 1, 1}, []int{0, 1, 5}, "at 2"},
		{"gold negative", []int{-1}, []int{0}, "at 0"},
		{"pred negative", []int{1, 0}, []int{1, -1}, "at 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Score(labels, tc.gold, tc.pred)
			if err == nil {
				t.Fatal("want an out-of-range error")
			}
			if !strings.Contains(err.Error(), "out of range") || !strings.Contains(err.Error(), tc.at) {
				t.Fatalf("error %q should say out of range %s", err, tc.at)
			}
		})
	}
}

// TestReportJSON pins the field names eval --json and model.json expose.
func TestReportJSON(t *testing.T) {
	r, err := Score([]string{"a", "b"}, []int{0, 1}, []int{0, 0})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"n", "accuracy", "macro_f1", "per_class"} {
		if _, ok := got[k]; !ok {
			t.Errorf("report JSON %s lacks %q", raw, k)
		}
	}
	pc, _ := got["per_class"].(map[string]any)
	a, _ := pc["a"].(map[string]any)
	for _, k := range []string{"precision", "recall", "f1", "support"} {
		if _, ok := a[k]; !ok {
			t.Errorf("per_class.a in %s lacks %q", raw, k)
		}
	}
}

func checkPerClass(t *testing.T, r Report, want map[string]ClassMetrics) {
	t.Helper()
	if len(r.PerClass) != len(want) {
		t.Errorf("per_class has %d labels, want %d: %+v", len(r.PerClass), len(want), r.PerClass)
	}
	for name, w := range want {
		g, ok := r.PerClass[name]
		if !ok {
			t.Errorf("per_class lacks %q", name)
			continue
		}
		if !near(g.Precision, w.Precision) || !near(g.Recall, w.Recall) || !near(g.F1, w.F1) || g.Support != w.Support {
			t.Errorf("%s: got P=%v R=%v F1=%v support=%d, want P=%v R=%v F1=%v support=%d",
				name, g.Precision, g.Recall, g.F1, g.Support, w.Precision, w.Recall, w.F1, w.Support)
		}
	}
}
