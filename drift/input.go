package drift

import (
	"math"
	"unicode"

	"github.com/triage-ml/triage/featurizer"
)

// MeasureInput measures one text as serving and training both see it: its
// length (WordPiece tokens without [CLS]/[SEP] when tokens are given,
// whitespace-separated words otherwise) and the share of it the model never
// saw in training (n-grams outside the vocabulary when features has terms,
// else [UNK] word pieces; unk is the [UNK] id, -1 without an encoder).
func MeasureInput(text string, features featurizer.Vector, tokens []int64, unk int64) (length int, oov float64) {
	if len(tokens) > 2 {
		length = len(tokens) - 2
	} else {
		length = countWords(text)
	}
	if features.Terms > 0 {
		return length, features.OOVRate()
	}
	if len(tokens) > 2 && unk >= 0 {
		n := 0
		for _, id := range tokens[1 : len(tokens)-1] {
			if id == unk {
				n++
			}
		}
		return length, float64(n) / float64(len(tokens)-2)
	}
	return length, 0
}

// countWords is len(strings.Fields(text)) without building the slice: it
// runs for every text the consumer and gateway classify.
func countWords(text string) int {
	n, in := 0, false
	for _, r := range text {
		space := unicode.IsSpace(r)
		if !space && !in {
			n++
		}
		in = !space
	}
	return n
}

// CosineDistance is 1 - cos(a, b): the embedding shift of one text from the
// training centroid. NaN when either vector is zero or their sizes differ.
func CosineDistance(a, b []float32) float64 {
	if len(b) == 0 || len(a) != len(b) {
		return math.NaN()
	}
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return math.NaN()
	}
	return 1 - dot/math.Sqrt(na*nb)
}
