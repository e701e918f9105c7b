package drift

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkWindow1000 is one monitored window: 1000 Adds and a Stats.
func BenchmarkWindow1000(b *testing.B) {
	ref := buildSynthReference(b, defaultSynth(), 1)
	rng := rand.New(rand.NewPCG(1, 2))
	obs := make([]Observation, 1000)
	for i := range obs {
		o, p := defaultSynth().draw(rng)
		o.Calibrated = maxOf(Calibrate(p, ref.Temperature))
		obs[i] = o
	}
	w := NewWindow(len(ref.Labels))
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		for _, o := range obs {
			w.Add(o)
		}
		w.Stats(ref)
	}
}

func BenchmarkBuildReference(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	val, probs := defaultSynth().sample(rng, testValRows)
	for b.Loop() {
		if _, err := BuildReference(labelNames(5), val, probs, ReferenceOptions{WindowSize: 500}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDomainAUC is 500 banking queries against 500 movie-review
// sentences (skipped without the shared data; see the synthetic one).
func BenchmarkDomainAUC(b *testing.B) {
	bank := sampleTexts(readTexts(b, "banking77/train.csv"), 500, 1)
	movies := sampleTexts(readTexts(b, "movie-reviews/train.csv"), 500, 2)
	for b.Loop() {
		if _, err := DomainAUC(bank, movies, 1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDomainAUCSynthetic(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	ref, win := synthTexts(rng, bankWords, 500), synthTexts(rng, movieWords, 500)
	for b.Loop() {
		if _, err := DomainAUC(ref, win, 1); err != nil {
			b.Fatal(err)
		}
	}
}
