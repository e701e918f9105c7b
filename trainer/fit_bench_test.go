package trainer

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/internal/dataset"
)

// benchDataDir is the shared data folder: TRIAGE_DATA_DIR, or ../shared/data
// from the project root.
func benchDataDir() string {
	if d := os.Getenv("TRIAGE_DATA_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "shared", "data")
}

// benchSet is a featurised train/validation split, as Train builds it.
type benchSet struct {
	trX, vaX    []featurizer.Vector
	trY, vaY    []int
	labels      []string
	numFeatures int
}

var benchSets sync.Map // rel path -> *benchSet

// benchSeed is `triage train`'s default --seed, so the benchmarks see the
// CLI's split and trials.
const benchSeed = 42

// loadBenchSet featurises a shared data set once per process (featurising
// is not what the benchmarks measure); it skips when the file is absent.
func loadBenchSet(b *testing.B, rel, labelCol string) *benchSet {
	b.Helper()
	if s, ok := benchSets.Load(rel); ok {
		return s.(*benchSet)
	}
	path := filepath.Join(benchDataDir(), rel)
	if _, err := os.Stat(path); err != nil {
		b.Skipf("%s not found (set TRIAGE_DATA_DIR or run `make data`): %v", path, err)
	}
	ds, err := dataset.Load(path, dataset.Options{TextColumn: "text", LabelColumn: labelCol})
	if err != nil {
		b.Fatal(err)
	}
	labels := dataset.Labels(ds.Examples)
	train, val, err := dataset.StratifiedSplit(ds.Examples, 0.1, benchSeed)
	if err != nil {
		b.Fatal(err)
	}
	index := map[string]int{}
	for i, l := range labels {
		index[l] = i
	}
	cfg := featurizer.DefaultConfig()
	ext, err := featurizer.NewExtractor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	vocab, err := ext.Fit(texts(train))
	if err != nil {
		b.Fatal(err)
	}
	fz, err := featurizer.New(cfg, vocab)
	if err != nil {
		b.Fatal(err)
	}
	s := &benchSet{trX: Featurize(fz, train, 2), vaX: Featurize(fz, val, 2),
		trY: labelIDs(train, index), vaY: labelIDs(val, index), labels: labels, numFeatures: vocab.Size()}
	benchSets.Store(rel, s)
	return s
}

// cpuTime is the process's user+system CPU time: on a shared machine it
// varies far less than wall time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchFit times one fit at fixed hyper-parameters (the search's pick on
// Banking77: lr 0.1, L2 1e-5, 12 epochs, trained with that trial's seed)
// and reports validation scores.
func benchFit(b *testing.B, rel, labelCol string, epochs int) {
	s := loadBenchSet(b, rel, labelCol)
	hp := HyperParams{Loss: LossLogistic, LearningRate: 0.1, L2: 1e-5}
	var m *Linear
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for b.Loop() {
		var err error
		m, err = fit(context.Background(), s.trX, s.trY, nil, s.numFeatures, len(s.labels), hp, epochs, benchSeed+1, nil)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric((cpuTime(b)-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	r := evaluate(m, s.vaX, s.vaY, s.labels)
	b.ReportMetric(r.Accuracy, "val_acc")
	b.ReportMetric(r.MacroF1, "val_macroF1")
}

// benchSearch times the default search (4 settings, early stopping).
func benchSearch(b *testing.B, rel, labelCol string) {
	s := loadBenchSet(b, rel, labelCol)
	opts := Options{DataPath: "x", OutDir: "x", Seed: benchSeed}
	if err := opts.Validate(); err != nil {
		b.Fatal(err)
	}
	var best candidate
	b.ResetTimer()
	cpu0 := cpuTime(b)
	for b.Loop() {
		var err error
		_, best, err = search(context.Background(), opts, s.trX, s.trY, nil, s.vaX, s.vaY, s.numFeatures, s.labels, func() {})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric((cpuTime(b)-cpu0).Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(best.report.Accuracy, "val_acc")
	b.ReportMetric(best.report.MacroF1, "val_macroF1")
	b.ReportMetric(float64(best.params.Epochs), "best_epoch")
}

func BenchmarkFitBanking77(b *testing.B)   { benchFit(b, "banking77/train.csv", "category", 12) }
func BenchmarkEpochBanking77(b *testing.B) { benchFit(b, "banking77/train.csv", "category", 2) }
func BenchmarkFitMR(b *testing.B)          { benchFit(b, "movie-reviews/train.csv", "label", 12) }

func BenchmarkSearchBanking77(b *testing.B) { benchSearch(b, "banking77/train.csv", "category") }
func BenchmarkSearchMR(b *testing.B)        { benchSearch(b, "movie-reviews/train.csv", "label") }
