package drift

import (
	"encoding/csv"
	"errors"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestROCAUC(t *testing.T) {
	for _, c := range []struct {
		name   string
		scores []float64
		pos    []bool
		want   float64
	}{
		{"perfect", []float64{0.1, 0.2, 0.8, 0.9}, []bool{false, false, true, true}, 1},
		{"reversed", []float64{0.9, 0.8, 0.2, 0.1}, []bool{false, false, true, true}, 0},
		// pairs (pos, neg): (0.8>0.1) (0.8>0.5) (0.4>0.1) (0.4<0.5) → 3/4
		{"mixed", []float64{0.1, 0.5, 0.4, 0.8}, []bool{false, false, true, true}, 0.75},
		// all tied: every pair counts half
		{"ties", []float64{1, 1, 1, 1, 1}, []bool{true, false, true, false, false}, 0.5},
		// 0.5-tie between a positive and a negative counts half: (1 + 0.5) / 2
		{"one tie", []float64{0.2, 0.5, 0.5}, []bool{false, false, true}, 0.75},
	} {
		if got := ROCAUC(c.scores, c.pos); !near(got, c.want, 1e-12) {
			t.Errorf("%s: AUC %v, want %v", c.name, got, c.want)
		}
	}
	if !math.IsNaN(ROCAUC([]float64{1, 2}, []bool{true, true})) || !math.IsNaN(ROCAUC([]float64{1}, nil)) {
		t.Error("one class or mismatched lengths should give NaN")
	}
}

// synthTexts makes n short texts from a vocabulary: the same generator
// twice is one distribution, two vocabularies are two.
func synthTexts(rng *rand.Rand, vocab []string, n int) []string {
	out := make([]string, n)
	for i := range out {
		words := make([]string, 5+rng.IntN(8))
		for j := range words {
			words[j] = vocab[rng.IntN(len(vocab))]
		}
		out[i] = strings.Join(words, " ")
	}
	return out
}

var (
	bankWords  = strings.Fields("my card payment transfer account money refund pending declined atm cash top up balance fee exchange rate pin blocked arrived still why can i how do you the a is not")
	movieWords = strings.Fields("the film movie plot actor director scenes funny boring story characters performance cast script its a is not and of with too much great bad")
)

func TestDomainAUCSynthetic(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	same, err := DomainAUC(synthTexts(rng, bankWords, 300), synthTexts(rng, bankWords, 300), 1)
	if err != nil {
		t.Fatal(err)
	}
	diff, err := DomainAUC(synthTexts(rng, bankWords, 300), synthTexts(rng, movieWords, 300), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("same vocabulary AUC %.3f, different vocabularies AUC %.3f", same, diff)
	if math.Abs(same-0.5) > 0.08 {
		t.Errorf("same distribution: AUC %.3f, want ≈ 0.5", same)
	}
	if diff < 0.9 {
		t.Errorf("different distributions: AUC %.3f, want > 0.9", diff)
	}
	if _, err := DomainAUC([]string{"a", "b"}, []string{"c", "d", "e"}, 1); err == nil {
		t.Error("two reference texts accepted")
	}
	x, y := synthTexts(rng, bankWords, 100), synthTexts(rng, movieWords, 100)
	a1, _ := DomainAUC(x, y, 3)
	if a2, _ := DomainAUC(x, y, 3); a1 != a2 {
		t.Errorf("same seed, different AUC: %v, %v", a1, a2)
	}
}

// dataDir is the shared data folder: TRIAGE_DATA_DIR, or ../shared/data
// from the project root.
func dataDir() string {
	if d := os.Getenv("TRIAGE_DATA_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "shared", "data")
}

// readTexts returns the text column of a shared data set, skipping the
// test when the file is absent.
func readTexts(tb testing.TB, rel string) []string {
	tb.Helper()
	f, err := os.Open(filepath.Join(dataDir(), rel))
	if errors.Is(err, fs.ErrNotExist) {
		tb.Skipf("%s not found under %s (set TRIAGE_DATA_DIR)", rel, dataDir())
	}
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		tb.Fatal(err)
	}
	col := slices.Index(rows[0], "text")
	if col < 0 {
		tb.Fatalf("%s: no text column in %v", rel, rows[0])
	}
	texts := make([]string, 0, len(rows)-1)
	for _, r := range rows[1:] {
		texts = append(texts, r[col])
	}
	return texts
}

// sampleTexts draws n distinct texts, seeded.
func sampleTexts(texts []string, n int, seed uint64) []string {
	perm := rand.New(rand.NewPCG(seed, 5)).Perm(len(texts))
	out := make([]string, n)
	for i := range out {
		out[i] = texts[perm[i]]
	}
	return out
}

func TestDomainAUCRealText(t *testing.T) {
	bank := readTexts(t, "banking77/train.csv")
	movies := readTexts(t, "movie-reviews/train.csv")
	both := sampleTexts(bank, 1000, 1)
	cases := []struct {
		name      string
		ref, win  []string
		low, high float64
	}{
		{"banking vs banking", both[:500], both[500:], 0.42, 0.58},
		{"movies vs movies", sampleTexts(movies, 500, 2), sampleTexts(movies, 1000, 3)[500:], 0.42, 0.58},
		{"banking vs movies", both[:500], sampleTexts(movies, 500, 4), 0.9, 1},
	}
	for _, c := range cases {
		start := time.Now()
		auc, err := DomainAUC(c.ref, c.win, 7)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s (%d+%d texts): AUC %.3f in %v", c.name, len(c.ref), len(c.win), auc, time.Since(start).Round(time.Millisecond))
		if auc < c.low || auc > c.high {
			t.Errorf("%s: AUC %.3f, want in [%.2f, %.2f]", c.name, auc, c.low, c.high)
		}
	}
}

// TestDomainReference: the null threshold sits above same-distribution
// windows and below clearly different ones.
func TestDomainReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	same := synthTexts(rng, bankWords, 700)
	ref, err := BuildDomainReference(same[:600], 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("null AUC %.3f ± %.3f over %d runs, threshold %.3f", ref.NullMean, ref.NullSD, ref.NullRuns, ref.Threshold)
	if ref.NullMean < 0.4 || ref.NullMean > 0.6 || ref.Threshold < 0.6 || ref.Threshold > 0.8 {
		t.Errorf("null %.3f, threshold %.3f: want a null near 0.5 and a threshold in [0.6, 0.8]", ref.NullMean, ref.Threshold)
	}
	if auc, alarm, err := ref.Test(same[600:], 2); err != nil || alarm {
		t.Errorf("same distribution: AUC %.3f alarm %v err %v", auc, alarm, err)
	}
	if auc, alarm, err := ref.Test(synthTexts(rng, movieWords, 100), 3); err != nil || !alarm {
		t.Errorf("other distribution: AUC %.3f alarm %v err %v", auc, alarm, err)
	}
	if _, err := BuildDomainReference(same[:10], 1); err == nil {
		t.Error("a 10-text reference was accepted")
	}
}
