package featurizer

import (
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func fitted(t *testing.T, cfg Config, texts ...string) *Featurizer {
	t.Helper()
	ext, err := NewExtractor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ext.Fit(texts)
	if err != nil {
		t.Fatal(err)
	}
	f, err := New(cfg, v)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func l2(v Vector) float64 {
	var s float64
	for _, w := range v.Weights {
		s += float64(w) * float64(w)
	}
	return math.Sqrt(s)
}

func TestNormalize(t *testing.T) {
	cases := []struct{ in, want string }{
		{"Ｃａｒｄ", "card"},                         // full-width -> ASCII by NFKC
		{"CAFE\u0301", "café"},                   // combining acute composed by NFKC
		{"Straße", "strasse"},                    // full case folding
		{"ﬁnd", "find"},                          // ligature decomposed
		{"bad \xff\xfe byte", "bad \uFFFD byte"}, // invalid UTF-8 replaced, not dropped
	}
	for _, c := range cases {
		got, tr := Normalize(c.in, 0)
		if got != c.want || tr {
			t.Errorf("Normalize(%q) = %q, %v; want %q, false", c.in, got, tr, c.want)
		}
	}
	got, tr := Normalize("héllo wörld", 3)
	if got != "hél" || !tr {
		t.Errorf("truncation by runes: got %q %v", got, tr)
	}
}

func TestTokenize(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"where's my card?!", []string{"where's", "my", "card", "?", "!"}},
		{"I love it 😍😍", []string{"I", "love", "it", "😍", "😍"}},
		{"我的卡丢了", []string{"我", "的", "卡", "丢", "了"}},
		{"بطاقتي لم تصل", []string{"بطاقتي", "لم", "تصل"}}, // RTL script: words kept whole
		{"cafe\u0301 ok", []string{"cafe\u0301", "ok"}},    // combining mark stays in its word
		{"tab\tnew\nline\x00nul", []string{"tab", "new", "line", "nul"}},
		{"'quoted'", []string{"quoted"}},
		{"", nil},
	}
	for _, c := range cases {
		var got []string
		for _, tk := range tokenize(c.in, nil) {
			got = append(got, tk.text)
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("tokenize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestTransformTrickyInput(t *testing.T) {
	f := fitted(t, DefaultConfig(), "my card has not arrived", "I love this film 😍", "我的卡丢了",
		"بطاقتي لم تصل", "café crème", "refund not showing up")
	inputs := []string{
		"my card 😍 has not arrived",
		"我的卡丢了吗",
		"بطاقتي لم تصل بعد",
		"cafe\u0301 cre\u0300me", // decomposed form must match the composed training text
		"\xff\xfe\xfd invalid \xc3\x28 bytes card",
		"\u200f\u202eRTL override card\u202c",
		"   \t\n  ",
		strings.Repeat("a", 10000),
	}
	for _, in := range inputs {
		v := f.Transform(in)
		if len(v.IDs) != len(v.Weights) {
			t.Fatalf("%q: %d ids, %d weights", in, len(v.IDs), len(v.Weights))
		}
		for i, id := range v.IDs {
			if id < 1 || int(id) >= f.Vocab().Size() {
				t.Fatalf("%q: id %d out of range", in, id)
			}
			if i > 0 && v.IDs[i-1] >= id {
				t.Fatalf("%q: ids not strictly ascending", in)
			}
		}
		if n := l2(v); len(v.IDs) > 0 && math.Abs(n-1) > 1e-5 {
			t.Errorf("%q: norm %v, want 1", in, n)
		}
	}
	composed := f.Transform("café crème")
	decomposed := f.Transform("cafe\u0301 cre\u0300me")
	if len(composed.IDs) == 0 || !equalVec(composed, decomposed) {
		t.Errorf("NFC and NFD spellings give different vectors")
	}
	if v := f.Transform("   \t\n  "); len(v.IDs) != 0 {
		t.Errorf("whitespace-only text has features %v", v.IDs)
	}
	if v := f.Transform("我的卡丢了吗"); len(v.IDs) == 0 {
		t.Errorf("CJK text found no trained features")
	}
}

func equalVec(a, b Vector) bool {
	if len(a.IDs) != len(b.IDs) {
		return false
	}
	for i := range a.IDs {
		if a.IDs[i] != b.IDs[i] || math.Abs(float64(a.Weights[i]-b.Weights[i])) > 1e-7 {
			return false
		}
	}
	return true
}

func TestTransformOneMegabyte(t *testing.T) {
	f := fitted(t, DefaultConfig(), "card arrived", "lost my card")
	big := strings.Repeat("my card 😍 has not arrived \xff ", 1<<20/30)
	if len(big) < 1<<20-64 {
		t.Fatalf("test text too small: %d", len(big))
	}
	start := time.Now()
	v := f.Transform(big)
	if !v.Truncated {
		t.Error("1 MB text not flagged as truncated")
	}
	if len(v.IDs) == 0 {
		t.Error("1 MB text has no features")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("1 MB text took %v", d)
	}
	// Without a window the whole text is featurised and still normalised.
	cfg := DefaultConfig()
	cfg.MaxRunes = 2 << 20
	f2 := fitted(t, cfg, "card arrived", "lost my card")
	v2 := f2.Transform(big)
	if v2.Truncated || math.Abs(l2(v2)-1) > 1e-5 {
		t.Errorf("unwindowed 1 MB: truncated=%v norm=%v", v2.Truncated, l2(v2))
	}
}

func TestFitIDF(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CharNgramMin, cfg.CharNgramMax, cfg.WordNgramMax = 0, 0, 1
	f := fitted(t, cfg, "card", "card lost", "card stolen")
	// "card" is in every text: idf = ln(4/4)+1 = 1; "lost": ln(4/2)+1.
	v := f.Transform("card lost")
	if len(v.IDs) != 2 {
		t.Fatalf("want 2 features, got %d", len(v.IDs))
	}
	var idfs []float64
	for _, id := range v.IDs {
		idfs = append(idfs, float64(f.Vocab().IDF[id-1]))
	}
	want := map[float64]bool{1: true, math.Log(2) + 1: true}
	for _, x := range idfs {
		found := false
		for w := range want {
			if math.Abs(x-w) < 1e-6 {
				found = true
			}
		}
		if !found {
			t.Errorf("idf %v not in %v", x, want)
		}
	}
	// Sublinear TF: a repeated word weighs 1+ln(3), not 3.
	rep := f.Transform("lost lost lost card")
	wantRatio := (1 + math.Log(3)) * (math.Log(2) + 1) // lost : card
	var lost, card float64
	for i, id := range rep.IDs {
		if math.Abs(float64(f.Vocab().IDF[id-1])-1) < 1e-6 {
			card = float64(rep.Weights[i])
		} else {
			lost = float64(rep.Weights[i])
		}
	}
	if math.Abs(lost/card-wantRatio) > 1e-4 {
		t.Errorf("lost/card = %v, want %v", lost/card, wantRatio)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := DefaultConfig()
	bad.HashBits = 4
	bad.MinDF = 0
	bad.Stem = "klingon"
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"hash_bits", "min_df", "klingon"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("default config invalid: %v", err)
	}
}

func TestBatchPads(t *testing.T) {
	ids, w, n := Batch([]Vector{{IDs: []int64{1, 2, 3}, Weights: []float32{.1, .2, .3}}, {IDs: []int64{4}, Weights: []float32{1}}, {}})
	if n != 3 || len(ids) != 9 || ids[3] != 4 || ids[4] != 0 || w[4] != 0 || ids[6] != 0 {
		t.Errorf("Batch = %v %v %d", ids, w, n)
	}
	if _, _, n := Batch([]Vector{{}}); n != 1 {
		t.Errorf("empty batch length %d, want 1", n)
	}
}

func FuzzTransform(f *testing.F) {
	for _, s := range []string{"card", "😍", "我的卡", "\xff", "cafe\u0301", ""} {
		f.Add(s)
	}
	fz := fitted(&testing.T{}, DefaultConfig(), "my card has not arrived", "refund please")
	f.Fuzz(func(t *testing.T, s string) {
		v := fz.Transform(s)
		if len(v.IDs) != len(v.Weights) {
			t.Fatal("ids/weights length mismatch")
		}
		if n := l2(v); len(v.IDs) > 0 && math.Abs(n-1) > 1e-4 {
			t.Fatalf("norm %v", n)
		}
		norm, _ := Normalize(s, 0)
		if !utf8.ValidString(norm) {
			t.Fatal("normalised text is not valid UTF-8")
		}
	})
}
