package featurizer

import (
	"encoding/csv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// dataDir is the shared data folder: TRIAGE_DATA_DIR, or ../shared/data
// from the project root.
func dataDir() string {
	if d := os.Getenv("TRIAGE_DATA_DIR"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "shared", "data")
}

// readTexts returns the text column of a shared CSV, or nil when absent.
func readTexts(tb testing.TB, rel string) []string {
	tb.Helper()
	f, err := os.Open(filepath.Join(dataDir(), rel))
	if err != nil {
		return nil
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) < 2 {
		tb.Fatalf("%s: %v", rel, err)
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

// synthTexts mixes scripts, emoji, invalid bytes, combining marks, case and
// lengths (empty up to past MaxRunes) so both Normalize paths and
// truncation are exercised.
func synthTexts(n int, seed uint64) []string {
	pieces := []string{"card", "Card", "CARD", "arrived", "refund", "still", "waiting", "hasn't",
		"Ｃａｒｄ", "café", "cafe\u0301", "Straße", "ﬁnd", "😍", "👍🏽", "我的卡丢了", "カード", "бумажник",
		"بطاقتي", "لم", "تصل", "\xff\xfe", "?!", "2 weeks", "£20", "e-mail", "'quoted'", "don't",
		"\u200f\u202eRTL\u202c", "\t\n", "ÅNGSTRÖM", "ǅemal", "İstanbul", "running", "generously",
		"connection", "relational", "happiness"}
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]string, n)
	for i := range out {
		var sb strings.Builder
		words := rng.IntN(30)
		if i%50 == 0 {
			words = 3000 // past the default 8192-rune window
		}
		for range words {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
			if rng.IntN(5) > 0 {
				sb.WriteByte(' ')
			}
		}
		out[i] = sb.String()
	}
	return out
}

var benchOnce struct {
	sync.Once
	texts []string
}

// benchTexts is Banking77 (realistic support queries) when present, else
// synthetic ASCII-heavy text.
func benchTexts(b *testing.B) []string {
	benchOnce.Do(func() {
		benchOnce.texts = readTexts(b, "banking77/train.csv")
		if benchOnce.texts == nil {
			benchOnce.texts = synthTexts(5000, 1)
		}
	})
	return benchOnce.texts
}

func benchFeaturizer(b *testing.B, cfg Config, texts []string) *Featurizer {
	ext, err := NewExtractor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	v, err := ext.Fit(texts[:len(texts)/2]) // leave some unseen n-grams for the rest
	if err != nil {
		b.Fatal(err)
	}
	f, err := New(cfg, v)
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkTransform reports one op as one text; "legacy" is the sort-based
// implementation in legacy_test.go, run in the same process for a fair ratio.
func BenchmarkTransform(b *testing.B) {
	texts := benchTexts(b)
	stemmed := DefaultConfig()
	stemmed.Stem = "english"
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"default", DefaultConfig()}, {"stem", stemmed}} {
		f := benchFeaturizer(b, c.cfg, texts)
		b.Run(c.name+"/legacy", func(b *testing.B) {
			s := &legacyScratch{}
			loop(b, texts, func(t string) { f.legacyTransform(t, s) })
		})
		b.Run(c.name+"/Transform", func(b *testing.B) {
			loop(b, texts, func(t string) { f.Transform(t) })
		})
		b.Run(c.name+"/TransformTo", func(b *testing.B) {
			var v Vector
			loop(b, texts, func(t string) { f.TransformTo(&v, t) })
		})
	}
}

func BenchmarkFit(b *testing.B) {
	texts := benchTexts(b)
	ext, err := NewExtractor(DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	for _, impl := range []string{"legacy", "new"} {
		b.Run(impl, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if impl == "legacy" {
					_, err = ext.legacyFit(texts)
				} else {
					_, err = ext.Fit(texts)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// loop runs op over texts in turn and adds a cpu-ns/op metric (CPU time of
// the benchmark's locked thread, less skewed by other load than ns/op).
func loop(b *testing.B, texts []string, op func(string)) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	start, i := threadCPU(), 0
	for b.Loop() {
		op(texts[i%len(texts)])
		i++
	}
	if cpu := threadCPU() - start; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}
