package drift

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/triage-ml/triage/featurizer"
)

// Domain classifier settings. A classifier that cannot tell reference texts
// from window texts apart (AUC ≈ 0.5) says the window's inputs look like
// the reference's; this is Evidently's text drift test and a classifier
// two-sample test (Lopez-Paz & Oquab 2017, "Revisiting Classifier
// Two-Sample Tests").
const (
	domainFolds  = 3
	domainEpochs = 5
	domainLR     = 0.5
	domainL2     = 1e-4
	// 2^18 buckets: a few thousand texts use well under 1% of them, so
	// collisions are rare, and the index stays small.
	domainHashBits = 18
	// Topic and style show in the first couple of thousand characters;
	// featurising whole documents would only cost time.
	domainMaxRunes = 2048
)

// DomainAUC trains a classifier to tell reference texts from window texts
// and returns its cross-validated ROC AUC: 0.5 when the two are
// indistinguishable, near 1 when the window comes from elsewhere.
//
// Features are the project's hashed word and character n-grams (TF-IDF,
// featurizer.DefaultConfig with 2^18 buckets); the classifier is a binary
// logistic regression trained with AdaGrad for a few epochs, with classes
// weighted to equal total weight. With k = 3 stratified folds the
// vocabulary and the model are fitted on two folds and score the third;
// the result is the mean of the three folds' AUCs. Folds and visiting
// order come from seed, so a call is reproducible.
func DomainAUC(reference, window []string, seed uint64) (float64, error) {
	if len(reference) < domainFolds || len(window) < domainFolds {
		return math.NaN(), fmt.Errorf("domain AUC: need at least %d texts on each side, have %d reference and %d window",
			domainFolds, len(reference), len(window))
	}
	cfg := featurizer.DefaultConfig()
	cfg.HashBits, cfg.MaxRunes = domainHashBits, domainMaxRunes
	ext, err := featurizer.NewExtractor(cfg)
	if err != nil {
		return math.NaN(), fmt.Errorf("domain AUC: %w", err)
	}
	texts := slices.Concat(reference, window)
	isWindow := make([]bool, len(texts))
	for i := len(reference); i < len(texts); i++ {
		isWindow[i] = true
	}
	rng := rand.New(rand.NewPCG(seed, 0x646f6d61696e6175)) // "domainau"
	fold := make([]int, len(texts))
	stratify := func(lo, hi int) { // each side spread evenly over the folds
		for i, p := range rng.Perm(hi - lo) {
			fold[lo+p] = i % domainFolds
		}
	}
	stratify(0, len(reference))
	stratify(len(reference), len(texts))

	var sum float64
	for f := range domainFolds {
		var trainTexts []string
		var trainY []bool
		var test []int
		for i, t := range texts {
			if fold[i] == f {
				test = append(test, i)
			} else {
				trainTexts = append(trainTexts, t)
				trainY = append(trainY, isWindow[i])
			}
		}
		vocab, err := ext.Fit(trainTexts)
		if err != nil {
			return math.NaN(), fmt.Errorf("domain AUC: fold %d: %w", f, err)
		}
		fz, err := featurizer.New(cfg, vocab)
		if err != nil {
			return math.NaN(), fmt.Errorf("domain AUC: fold %d: %w", f, err)
		}
		xs := make([]featurizer.Vector, len(trainTexts))
		for i, t := range trainTexts {
			xs[i] = fz.Transform(t)
		}
		m := fitLogistic(xs, trainY, vocab.Size(), rng)
		scores := make([]float64, len(test))
		pos := make([]bool, len(test))
		for i, j := range test {
			scores[i], pos[i] = m.score(fz.Transform(texts[j])), isWindow[j]
		}
		sum += ROCAUC(scores, pos)
	}
	return sum / domainFolds, nil
}

// logistic is a binary logistic regression over sparse features.
type logistic struct {
	w []float64
	b float64
}

// score is the log-odds of the positive class (AUC needs only the order).
func (m *logistic) score(x featurizer.Vector) float64 {
	s := m.b
	for j, id := range x.IDs {
		s += float64(x.Weights[j]) * m.w[id]
	}
	return s
}

// fitLogistic minimises class-weighted log loss with AdaGrad (as
// trainer.fit does for the served model: per-coordinate steps suit sparse
// TF-IDF input) and L2 decay on the rows an example touches.
func fitLogistic(xs []featurizer.Vector, ys []bool, numFeatures int, rng *rand.Rand) *logistic {
	m := &logistic{w: make([]float64, numFeatures)}
	acc := make([]float64, numFeatures)
	var accB float64
	npos := 0
	for _, y := range ys {
		if y {
			npos++
		}
	}
	// Weighting both classes to half the total keeps an unbalanced pair
	// (a large reference, a small window) from training a constant.
	wPos := float64(len(ys)) / (2 * float64(max(npos, 1)))
	wNeg := float64(len(ys)) / (2 * float64(max(len(ys)-npos, 1)))
	order := make([]int, len(xs))
	for i := range order {
		order[i] = i
	}
	const eps = 1e-8
	for range domainEpochs {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			x := xs[i]
			p := 1 / (1 + math.Exp(-m.score(x)))
			g := p * wNeg
			if ys[i] {
				g = (p - 1) * wPos
			}
			accB += g * g
			m.b -= domainLR * g / math.Sqrt(accB+eps)
			for j, id := range x.IDs {
				gj := g*float64(x.Weights[j]) + domainL2*m.w[id]
				acc[id] += gj * gj
				m.w[id] -= domainLR * gj / math.Sqrt(acc[id]+eps)
			}
		}
	}
	return m
}

// ROCAUC is the area under the ROC curve of scores for telling positive
// from negative examples: the Mann–Whitney probability that a random
// positive scores above a random negative, ties counting half (average
// ranks). NaN when either class is empty or the lengths differ.
func ROCAUC(scores []float64, positive []bool) float64 {
	n := len(scores)
	if n != len(positive) {
		return math.NaN()
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(scores[a], scores[b]) })
	var rankSum float64
	npos := 0
	for i := 0; i < n; {
		j := i + 1
		for j < n && cmp.Compare(scores[idx[j]], scores[idx[i]]) == 0 {
			j++
		}
		rank := float64(i+j+1) / 2 // mean of 1-based ranks i+1..j
		for _, k := range idx[i:j] {
			if positive[k] {
				rankSum += rank
				npos++
			}
		}
		i = j
	}
	nneg := n - npos
	if npos == 0 || nneg == 0 {
		return math.NaN()
	}
	return (rankSum - float64(npos)*float64(npos+1)/2) / (float64(npos) * float64(nneg))
}
