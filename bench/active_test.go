package bench

import (
	"context"
	"encoding/csv"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/trainer"
)

// writeSynthetic writes perClass rows for each of three labels: a label's
// keyword among shared filler words, so a linear model can learn it.
func writeSynthetic(t *testing.T, perClass int) string {
	t.Helper()
	keywords := map[string]string{"refund": "money back", "delivery": "parcel courier", "login": "password locked"}
	filler := strings.Fields("please help today my account the order was is not again why how can you")
	rng := rand.New(rand.NewPCG(1, 2))
	path := filepath.Join(t.TempDir(), "synthetic.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	w.Write([]string{"text", "category"})
	for _, label := range []string{"refund", "delivery", "login"} {
		for range perClass {
			words := []string{keywords[label]}
			for range 4 {
				words = append(words, filler[rng.IntN(len(filler))])
			}
			rng.Shuffle(len(words), func(i, j int) { words[i], words[j] = words[j], words[i] })
			w.Write([]string{strings.Join(words, " "), label})
		}
	}
	w.Flush()
	if err := errors.Join(w.Error(), f.Close()); err != nil {
		t.Fatal(err)
	}
	return path
}

func testConfig(path string) ActiveConfig {
	return ActiveConfig{Data: path, LabelColumn: "category", EvalFraction: 0.25, SeedFraction: 0.2,
		Batch: 5, Rounds: 3, Seeds: 2, Epochs: 3, Workers: 2}
}

func TestSimulateLoopMechanics(t *testing.T) {
	cfg := testConfig(writeSynthetic(t, 40))
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	d, err := loadActive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d.seed+d.pool+d.eval != 120 || d.eval != 30 || d.seed != 18 {
		t.Fatalf("split seed/pool/eval = %d/%d/%d; want 18/72/30 of 120", d.seed, d.pool, d.eval)
	}
	for _, strategy := range []string{StrategyMargin, StrategyRandom} {
		var prev []int
		rounds := 0
		curve, err := simulate(context.Background(), d, cfg, strategy, 7, func(round int, rows []int) {
			rounds++
			if want := d.seed + round*cfg.Batch; len(rows) != want {
				t.Errorf("%s round %d: trained on %d rows, want %d", strategy, round, len(rows), want)
			}
			if !slices.Equal(rows[:len(prev)], prev) {
				t.Errorf("%s round %d: earlier labels were dropped or reordered", strategy, round)
			}
			seen := map[int]bool{}
			for _, r := range rows {
				if r >= d.seed+d.pool {
					t.Errorf("%s round %d: trained on evaluation row %d", strategy, round, r)
				}
				if seen[r] {
					t.Errorf("%s round %d: row %d labelled twice", strategy, round, r)
				}
				seen[r] = true
			}
			for r := range d.seed {
				if !seen[r] {
					t.Errorf("%s round %d: seed row %d missing", strategy, round, r)
				}
			}
			prev = rows
		})
		if err != nil {
			t.Fatal(err)
		}
		if rounds != cfg.Rounds+1 || len(curve) != cfg.Rounds+1 {
			t.Fatalf("%s: %d trainings, %d reports; want %d of each", strategy, rounds, len(curve), cfg.Rounds+1)
		}
		for i, r := range curve {
			if r.N != d.eval {
				t.Fatalf("%s report %d scored %d rows, want the %d evaluation rows", strategy, i, r.N, d.eval)
			}
		}
	}
}

func TestPickMarginTakesMostUncertain(t *testing.T) {
	// Feature f alone drives row f's class scores: row[f] = scores of f.
	scores := [][]float32{
		1: {0.1, 0, 0}, // nearly tied: small margin
		2: {5, 0, 0},   // confident
		3: {2, 2, -10}, // top two exactly tied: margin 0
		4: {3, 0, 0},   // fairly confident
		5: {0.5, 0, 0}, // small margin, larger than row 1's
		6: {0, 0.2, 0}, // another near tie, best class not 0
	}
	m := &trainer.Linear{NumFeatures: len(scores), NumClasses: 3, W: make([]float32, len(scores)*3), B: make([]float32, 3)}
	xs := make([]featurizer.Vector, len(scores))
	for f := 1; f < len(scores); f++ {
		copy(m.W[f*3:], scores[f])
		xs[f] = featurizer.Vector{IDs: []int64{int64(f)}, Weights: []float32{1}}
	}
	got := pickMargin(m, xs, []int{2, 5, 4, 1, 3, 6}, 3)
	if want := []int{3, 1, 6}; !slices.Equal(got, want) {
		t.Fatalf("picked %v, want %v (ascending top-2 margin)", got, want)
	}

	// topTwoMargin against softmax computed directly.
	for f := 1; f < len(scores); f++ {
		z := scores[f]
		var sum float64
		p := make([]float64, len(z))
		for c, v := range z {
			p[c] = math.Exp(float64(v))
			sum += p[c]
		}
		slices.Sort(p)
		want := (p[2] - p[1]) / sum
		if got := topTwoMargin(slices.Clone(z)); math.Abs(got-want) > 1e-6 {
			t.Errorf("row %d: margin %v, want %v", f, got, want)
		}
	}
}

func TestActiveCurves(t *testing.T) {
	cfg := testConfig(writeSynthetic(t, 40))
	res, err := Active(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != cfg.Rounds+1 {
		t.Fatalf("%d rows, want %d", len(res.Rows), cfg.Rounds+1)
	}
	for i, r := range res.Rows {
		if want := res.Info.Seed + i*cfg.Batch; r.Labels != want {
			t.Errorf("row %d: %d labels, want %d", i, r.Labels, want)
		}
		if len(r.MarginAccBySeed) != cfg.Seeds || len(r.RandomAccBySeed) != cfg.Seeds {
			t.Errorf("row %d: per-seed figures %v %v, want %d each", i, r.MarginAccBySeed, r.RandomAccBySeed, cfg.Seeds)
		}
		if r.DeltaAcc != r.MarginAcc-r.RandomAcc {
			t.Errorf("row %d: delta %v != %v − %v", i, r.DeltaAcc, r.MarginAcc, r.RandomAcc)
		}
	}
	// Before any pick both strategies train the same rows with the same
	// seed, so the first row must agree exactly.
	if r := res.Rows[0]; !slices.Equal(r.MarginAccBySeed, r.RandomAccBySeed) {
		t.Fatalf("seed-set row differs: margin %v, random %v", r.MarginAccBySeed, r.RandomAccBySeed)
	}
	// The synthetic labels are keyword-separable: a model that learnt
	// nothing would sit near 1/3.
	if last := res.Rows[len(res.Rows)-1]; last.MarginAcc < 0.9 || last.RandomAcc < 0.9 {
		t.Fatalf("final accuracy margin %v, random %v: the training loop is not learning", last.MarginAcc, last.RandomAcc)
	}
}

func TestActiveRejectsOversizedRounds(t *testing.T) {
	cfg := testConfig(writeSynthetic(t, 40))
	cfg.Batch, cfg.Rounds = 50, 2 // 100 labels from a 72-row pool
	_, err := Active(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "pool rows") {
		t.Fatalf("err = %v, want a pool-size error", err)
	}
}
