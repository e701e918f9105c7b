package schemas

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// TestPredictionAppendJSON holds AppendJSON byte-identical to json.Marshal
// on awkward strings, float magnitudes and optional fields.
func TestPredictionAppendJSON(t *testing.T) {
	strs := []string{"", "card_arrival", `say "hi"`, `back\slash`, "<script>&amp;</script>", "tab\tnl\ncr\rbs\bff\f",
		"\x00\x01\x1f\x7f", "héllo wörld ✓ 日本語 🙂", "line\u2028para\u2029end", "bad \xff utf8 \xc3", "a/b'c`d"}
	floats := []float64{0, 1, 0.5, 1e-7, 1e-6, 9.99e-7, 123456.789, 1e20, 1e21, 1.5e22, -0.0, -3.25e-9,
		float64(float32(0.1)), float64(float32(0.987654321)), math.SmallestNonzeroFloat64, 12.345}
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	pickf := func() float64 {
		if rng.IntN(3) == 0 {
			return float64(rng.Float32())
		}
		return floats[rng.IntN(len(floats))]
	}
	var buf []byte
	for i := range 5000 {
		p := Prediction{
			ID:           pick(strs),
			Input:        InputRef{Topic: pick(strs), Partition: int32(rng.IntN(100)), Offset: rng.Int64()},
			Label:        pick(strs),
			Confidence:   pickf(),
			Model:        ModelRef{Name: pick(strs), Version: pick(strs)},
			ClassifiedAt: time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).UTC(),
			LatencyMS:    pickf(),
			Truncated:    rng.IntN(2) == 0,
			Abstained:    rng.IntN(2) == 0,
		}
		if i%7 != 0 {
			p.Scores = make([]Score, rng.IntN(6))
			for j := range p.Scores {
				p.Scores[j] = Score{Label: pick(strs), Score: pickf()}
			}
		}
		if i%3 == 0 {
			p.ClassifiedAt = p.ClassifiedAt.In(time.FixedZone("x", 3600*rng.IntN(10)))
		}
		if rng.IntN(2) == 0 {
			p.Signals = &Signals{Calibrated: pickf(), Margin: pickf(), Tokens: rng.IntN(500), OOVRate: pickf()}
			if rng.IntN(2) == 0 {
				d := pickf()
				p.Signals.EmbedDist = &d
			}
		}
		want, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var gerr error
		buf, gerr = p.AppendJSON(buf[:0])
		if gerr != nil {
			t.Fatal(gerr)
		}
		if !bytes.Equal(buf, want) {
			t.Fatalf("prediction %d:\n got %s\nwant %s", i, buf, want)
		}
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		p := Prediction{Confidence: bad, Scores: []Score{}}
		if _, err := json.Marshal(p); err == nil {
			t.Fatal("json.Marshal accepted a non-finite float")
		}
		if _, err := p.AppendJSON(nil); err == nil {
			t.Errorf("AppendJSON(%v) returned no error", bad)
		}
	}
}

func BenchmarkPredictionAppendJSON(b *testing.B) {
	d := 0.25
	p := Prediction{ID: "q-123", Input: InputRef{Topic: "triage.support-queries", Partition: 3, Offset: 123456}, Label: "card_arrival",
		Confidence: 0.91, Scores: []Score{{"card_arrival", 0.91}, {"card_linking", 0.05}, {"lost_or_stolen_card", 0.02}, {"x", 0.01}, {"y", 0.005}},
		Model: ModelRef{"support", "20261130T075913Z"}, ClassifiedAt: time.Now().UTC(), LatencyMS: 12.5,
		Signals: &Signals{Calibrated: 0.87, Margin: 0.86, Tokens: 9, OOVRate: 0.1, EmbedDist: &d}}
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_, _ = json.Marshal(p)
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for range b.N {
			buf, _ = p.AppendJSON(buf[:0])
		}
	})
}
