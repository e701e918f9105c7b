package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPickOOSIntents(t *testing.T) {
	var labels []string
	for i := range 77 {
		labels = append(labels, fmt.Sprintf("intent_%02d", i))
	}
	eval, dev, err := PickOOSIntents(labels, 10, 42)
	if err != nil {
		t.Fatal(err)
	}
	if len(eval) != 10 || len(dev) != 10 || !slices.IsSorted(eval) || !slices.IsSorted(dev) {
		t.Fatalf("eval %v dev %v: want 10 sorted each", eval, dev)
	}
	for _, d := range dev {
		if slices.Contains(eval, d) {
			t.Errorf("%s is in both draws", d)
		}
	}
	// The draw depends on the label set, not its order, and on the seed.
	shuffled := slices.Clone(labels)
	rand.New(rand.NewPCG(1, 1)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	if e2, d2, _ := PickOOSIntents(shuffled, 10, 42); !slices.Equal(e2, eval) || !slices.Equal(d2, dev) {
		t.Errorf("label order changed the draw: %v %v", e2, d2)
	}
	if e3, _, _ := PickOOSIntents(labels, 10, 43); slices.Equal(e3, eval) {
		t.Errorf("seed 43 drew the same intents as 42")
	}
	if _, _, err := PickOOSIntents(labels[:20], 10, 42); err == nil {
		t.Error("20 intents split into two draws of 10 and nothing in scope")
	}
}

func TestAUROC(t *testing.T) {
	for _, c := range []struct {
		in, out []float64
		want    float64
	}{
		{[]float64{0.9, 0.8}, []float64{0.1, 0.2}, 1},
		{[]float64{0.1}, []float64{0.9}, 0},
		{[]float64{0.5, 0.9}, []float64{0.5, 0.1}, 0.875}, // 0.5 vs 0.5 ties count half
	} {
		if got := auroc(c.in, c.out); got != c.want {
			t.Errorf("auroc(%v, %v) = %v, want %v", c.in, c.out, got, c.want)
		}
	}
}

// A whole leave-intents-out run on generated intents (linear model only):
// the left-out intents' texts share no words with the others, so most of
// them abstain, and the figures hang together.
func TestOOSRun(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	var b strings.Builder
	b.WriteString("text,intent\n")
	for c := range 12 {
		for range 40 {
			var ws []string
			for range 5 { // words over two letters of the intent's own
				w := make([]byte, 4)
				for k := range w {
					w[k] = byte('a' + 2*c + rng.IntN(2))
				}
				ws = append(ws, string(w))
			}
			fmt.Fprintf(&b, "%s please help,i%02d\n", strings.Join(ws, " "), c)
		}
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "d.csv")
	if err := os.WriteFile(data, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := OOS(context.Background(), OOSConfig{Data: data, LabelColumn: "intent", Holdout: 2, WorkDir: filepath.Join(dir, "work"), AbstainPrecision: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "evaluation" || !slices.Equal(res.Held, res.Evaluation) || res.Classes != 10 || res.TrainRows != 400 || len(res.Models) != 1 {
		t.Fatalf("result %+v", res)
	}
	m := res.Models[0]
	if m.Kind != "linear" || m.InScope != 40 || m.OutOfScope != 80 || m.Abstain == nil {
		t.Fatalf("model %+v", m)
	}
	if m.AtThreshold.OOSRecall < 0.5 || m.AUROC < 0.8 || m.Curve[0].Coverage != 1 {
		t.Errorf("disjoint vocabularies: OOS recall %v, AUROC %v, curve %+v", m.AtThreshold.OOSRecall, m.AUROC, m.Curve)
	}
	dev, err := OOS(context.Background(), OOSConfig{Data: data, LabelColumn: "intent", Holdout: 2, Dev: true, WorkDir: filepath.Join(dir, "dev")})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dev.Held, res.Dev) || dev.Classes != 8 {
		t.Errorf("dev run held %v out of %d classes; want the dev draw %v, both draws out of training", dev.Held, dev.Classes, res.Dev)
	}
}
