package drift

import (
	"math"
	"math/rand/v2"
)

// synth generates a classifier's predictions on a stream: the class comes
// from prior, the logits are signal on the true class plus Gaussian noise,
// and the served model sharpens them (overconfidence, as Guo et al. found
// in modern networks).
type synth struct {
	prior   []float64
	signal  float64
	noise   float64
	sharpen float64
	tokens  int     // mean input length
	oov     float64 // mean OOV share
	embed   bool
}

func defaultSynth() synth {
	return synth{prior: []float64{0.3, 0.25, 0.2, 0.15, 0.1}, signal: 3, noise: 1.2, sharpen: 5, tokens: 12, oov: 0.05, embed: true}
}

// draw returns one prediction's observation (Calibrated unset) and its
// served probabilities.
func (s synth) draw(rng *rand.Rand) (Observation, []float64) {
	u, y := rng.Float64(), len(s.prior)-1
	for c, p := range s.prior {
		if u < p {
			y = c
			break
		}
		u -= p
	}
	z := make([]float64, len(s.prior))
	for c := range z {
		z[c] = s.noise * rng.NormFloat64()
		if c == y {
			z[c] += s.signal
		}
		z[c] *= s.sharpen
	}
	p := softmax(z)
	o := observe(p, y)
	o.Tokens = max(1, s.tokens+int(math.Round(3*rng.NormFloat64())))
	o.OOVRate = min(1, 2*s.oov*rng.Float64())
	o.EmbedDist = math.NaN()
	if s.embed {
		o.EmbedDist = 0.3 + 0.05*rng.NormFloat64()
	}
	return o, p
}

// sample draws n observations and their probabilities.
func (s synth) sample(rng *rand.Rand, n int) ([]Observation, [][]float64) {
	obs := make([]Observation, n)
	probs := make([][]float64, n)
	for i := range obs {
		obs[i], probs[i] = s.draw(rng)
	}
	return obs, probs
}

func softmax(z []float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = max(mx, v)
	}
	p := make([]float64, len(z))
	var sum float64
	for i, v := range z {
		p[i] = math.Exp(v - mx)
		sum += p[i]
	}
	for i := range p {
		p[i] /= sum
	}
	return p
}

// observe fills the prediction fields from served probabilities p.
func observe(p []float64, y int) Observation {
	best, second := 0, -1
	for c := range p {
		if p[c] > p[best] {
			best = c
		}
	}
	for c := range p {
		if c != best && (second < 0 || p[c] > p[second]) {
			second = c
		}
	}
	return Observation{Label: best, Confidence: p[best], Margin: p[best] - p[second], True: y}
}

func labelNames(k int) []string {
	out := make([]string, k)
	for i := range out {
		out[i] = string(rune('a' + i))
	}
	return out
}
