package featurizer

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// equivTexts is Banking77 and movie reviews (when present) plus generated
// unicode-heavy, invalid, empty and over-long texts.
func equivTexts(t *testing.T) []string {
	texts := synthTexts(3000, 2)
	texts = append(texts, "", " ", "\xff", "A", "Ｃａｒｄ CARD card", strings.Repeat("Ab 😍 ", 5000),
		strings.Repeat("x", 9000), strings.Repeat("é", 9000), "ǅ ß ﬃ İ ς Σ ﬀ ㎒ ½ Ⅻ",
		"e"+strings.Repeat("\u0301\u0323", 40)+" x", "한국어 ｶﾞｷﾞ ﾊﾟ", strings.Repeat("Ａ\u0300", 300)) // over-long mark runs, Hangul, half-width kana
	for _, rel := range []string{"banking77/train.csv", "movie-reviews/train.csv"} {
		texts = append(texts, readTexts(t, rel)...)
	}
	if testing.Short() {
		texts = texts[:min(len(texts), 6000)]
	}
	return texts
}

// TestMatchesLegacy checks the counting-table featuriser against the
// sort-based one it replaced: same vocabulary and IDF, and per text the same
// ids in the same (ascending) order, bit-identical weights, and the same
// Terms, Unseen and Truncated.
func TestMatchesLegacy(t *testing.T) {
	texts := equivTexts(t)
	stemmed := DefaultConfig()
	stemmed.Stem = "english"
	small := Config{WordNgramMax: 3, CharNgramMin: 2, CharNgramMax: 5, HashBits: 12, MinDF: 2, MaxRunes: 40, WordShare: 0.3}
	wordsOnly := Config{WordNgramMax: 1, HashBits: 16, MinDF: 1, MaxRunes: 100, WordShare: 0.5}
	for c, cfg := range []Config{DefaultConfig(), stemmed, small, wordsOnly} {
		ext, err := NewExtractor(cfg)
		if err != nil {
			t.Fatal(err)
		}
		train := texts[:len(texts)/2] // the rest brings unseen n-grams
		want, err := ext.legacyFit(train)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ext.Fit(train)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Buckets, want.Buckets) || !slices.Equal(got.IDF, want.IDF) {
			t.Fatalf("%+v: vocabulary differs: %d vs %d buckets", cfg, len(got.Buckets), len(want.Buckets))
		}
		f, err := New(cfg, got)
		if err != nil {
			t.Fatal(err)
		}
		ls := &legacyScratch{}
		var reused Vector
		step := 1
		if c > 0 {
			step = 7 // every text under the default config, a sample under the others
		}
		for i := 0; i < len(texts); i += step {
			text := texts[i]
			w := f.legacyTransform(text, ls)
			v := f.Transform(text)
			f.TransformTo(&reused, text)
			for _, g := range []Vector{v, reused} {
				if !identical(g, w) {
					t.Fatalf("%+v: text %d %.60q:\n got %+v\nwant %+v", cfg, i, text, g, w)
				}
			}
		}
	}
}

func identical(a, b Vector) bool {
	if a.Truncated != b.Truncated || a.Terms != b.Terms || a.Unseen != b.Unseen ||
		!slices.Equal(a.IDs, b.IDs) || len(a.Weights) != len(b.Weights) {
		return false
	}
	for i := range a.Weights {
		if math.Float32bits(a.Weights[i]) != math.Float32bits(b.Weights[i]) {
			return false
		}
	}
	return true
}

// TestNormalizeScratch checks the buffer-writing normaliser against the
// exported one, including a reused scratch across texts.
func TestNormalizeScratch(t *testing.T) {
	s := &scratch{}
	for _, text := range equivTexts(t) {
		for _, max := range []int{0, 7, 8192} {
			want, wt := legacyNormalize(text, max)
			got, gt := s.normalize(text, max)
			if got != want || gt != wt {
				t.Fatalf("%.60q max %d: got %.60q %v, want %.60q %v", text, max, got, gt, want, wt)
			}
			if n, nt := Normalize(text, max); n != want || nt != wt {
				t.Fatalf("Normalize(%.60q, %d) changed", text, max)
			}
		}
	}
}

func TestTransformToAllocs(t *testing.T) {
	f := fitted(t, DefaultConfig(), "I am still waiting on my card?", "What can I do if my card still hasn't arrived after 2 weeks?")
	var v Vector
	text := "What can I do if my card still hasn't arrived after 2 WEEKS? 😍 Ｃａｒｄ"
	f.TransformTo(&v, text) // sizes v and warms the pooled scratch
	if n := testing.AllocsPerRun(100, func() { f.TransformTo(&v, text) }); n != 0 {
		t.Errorf("TransformTo: %v allocs per text, want 0", n)
	}
}

func TestSortByID(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, idBits := range []int{1, 5, 8, 9, 17, 24, 31} {
		for _, n := range []int{0, 1, 31, 32, 33, 200, 3000, 10000} {
			seen := map[uint64]bool{}
			var keys []uint64
			for range n {
				id := rng.Uint64N(1 << idBits)
				if !seen[id] { // ids of a text are distinct
					seen[id] = true
					keys = append(keys, id<<32|uint64(rng.Uint32()))
				}
			}
			want := slices.Clone(keys)
			slices.SortFunc(want, func(a, b uint64) int { return cmp.Compare(a>>32, b>>32) })
			(&scratch{}).sortByID(keys, idBits)
			if !slices.Equal(keys, want) {
				t.Fatalf("idBits %d n %d: not sorted by id", idBits, n)
			}
		}
	}
}
