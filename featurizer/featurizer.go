package featurizer

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"unicode/utf8"

	"github.com/kljensen/snowball/english"
)

// Config is the part of a model bundle that fixes how text becomes features.
// It is stored in model.json; changing any field requires retraining.
type Config struct {
	// WordNgramMax is the longest word n-gram (1 = unigrams only, 2 = +bigrams).
	WordNgramMax int `json:"word_ngram_max"`
	// CharNgramMin/Max bound character n-grams taken inside each word padded
	// with one space on each side (0 disables character n-grams).
	CharNgramMin int `json:"char_ngram_min"`
	CharNgramMax int `json:"char_ngram_max"`
	// HashBits sets the hashed space to 2^HashBits buckets. Large enough that
	// collisions are rare; only buckets seen in training get a model row.
	HashBits int `json:"hash_bits"`
	// MinDF drops buckets seen in fewer training texts (noise, typos).
	MinDF int `json:"min_df"`
	// MaxRunes is the featurisation window: longer texts are truncated and
	// flagged rather than rejected.
	MaxRunes int `json:"max_runes"`
	// WordShare is the share of a vector's squared norm given to word
	// n-grams when both groups are present (the rest goes to characters).
	WordShare float64 `json:"word_share"`
	// Stem names a Snowball stemmer applied to word n-grams ("english"), or
	// "" for none; character n-grams always see the unstemmed word.
	Stem string `json:"stem,omitempty"`
}

// DefaultConfig works well for short support queries and review sentences.
func DefaultConfig() Config {
	return Config{WordNgramMax: 2, CharNgramMin: 1, CharNgramMax: 4, HashBits: 24, MinDF: 1, MaxRunes: 8192, WordShare: 0.5}
}

// Validate reports every problem at once, each saying what to change.
func (c Config) Validate() error {
	var errs []error
	if c.WordNgramMax < 0 || c.WordNgramMax > 4 {
		errs = append(errs, fmt.Errorf("word_ngram_max %d: must be 0..4", c.WordNgramMax))
	}
	if c.CharNgramMin < 0 || c.CharNgramMax < c.CharNgramMin || c.CharNgramMax > 8 {
		errs = append(errs, fmt.Errorf("char n-gram range [%d,%d]: need 0 <= min <= max <= 8", c.CharNgramMin, c.CharNgramMax))
	}
	if c.CharNgramMin == 0 && c.CharNgramMax != 0 {
		errs = append(errs, errors.New("char_ngram_min 0 disables char n-grams: set char_ngram_max to 0 too"))
	}
	if c.WordNgramMax == 0 && c.CharNgramMax == 0 {
		errs = append(errs, errors.New("no features: enable word or character n-grams"))
	}
	if c.HashBits < 10 || c.HashBits > 31 {
		errs = append(errs, fmt.Errorf("hash_bits %d: must be 10..31", c.HashBits))
	}
	if c.MinDF < 1 {
		errs = append(errs, fmt.Errorf("min_df %d: must be >= 1", c.MinDF))
	}
	if c.WordShare <= 0 || c.WordShare >= 1 {
		errs = append(errs, fmt.Errorf("word_share %v: must be in (0,1)", c.WordShare))
	}
	if c.Stem != "" && c.Stem != "english" {
		errs = append(errs, fmt.Errorf("stem %q: supported are \"english\" or \"\" (none)", c.Stem))
	}
	if c.MaxRunes < 1 {
		errs = append(errs, fmt.Errorf("max_runes %d: must be >= 1", c.MaxRunes))
	}
	return errors.Join(errs...)
}

// FNV-1a, 64-bit: cheap, allocation-free, and stable across platforms and
// Go versions (unlike maphash), which a persisted hashing scheme requires.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func fnvByte(h uint64, b byte) uint64 {
	h ^= uint64(b)
	return h * fnvPrime
}

// Feature namespaces keep a word "ab" and a character gram "ab" apart.
const (
	nsWord1 = 'w'
	nsWord2 = 'b'
	nsWordN = 'n'
	nsChar  = 'c'
)

// term is one distinct bucket of a text and its raw count.
type term struct {
	bucket uint32
	count  int32
}

type scratch struct {
	tokens []token
	words  []token  // tokens as word n-grams see them (stemmed when configured)
	hashes []uint32 // every bucket occurrence, sorted by extract
	terms  []term   // distinct buckets in ascending order with counts
	runes  []int    // byte offsets of rune starts in the padded word
	buf    []byte
}

var scratchPool = sync.Pool{New: func() any { return &scratch{} }}

// Extractor computes raw hashed term counts for text; it holds no learned
// state and is safe for concurrent use.
type Extractor struct {
	cfg     Config
	mask    uint64
	charBit uint32 // set on character n-gram buckets so the two groups never share a bucket
}

// NewExtractor validates cfg.
func NewExtractor(cfg Config) (*Extractor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("featurizer config: %w", err)
	}
	return &Extractor{cfg: cfg, mask: 1<<uint(cfg.HashBits) - 1, charBit: 1 << uint(cfg.HashBits)}, nil
}

// Config returns the extractor's configuration.
func (e *Extractor) Config() Config { return e.cfg }

// extract fills s.terms with the distinct hashed buckets of text, ascending,
// and their counts. Sorting a flat slice beats a hash map here: a few hundred
// uint32s sort in a couple of microseconds with no per-entry allocation, and
// ascending buckets give ascending vocabulary ids for free.
func (e *Extractor) extract(text string, s *scratch) (truncated bool) {
	s.hashes = s.hashes[:0]
	norm, truncated := Normalize(text, e.cfg.MaxRunes)
	s.tokens = tokenize(norm, s.tokens[:0])
	add := func(h uint64) { s.hashes = append(s.hashes, uint32(h&e.mask)) }
	addChar := func(h uint64) { s.hashes = append(s.hashes, uint32(h&e.mask)|e.charBit) }

	if e.cfg.WordNgramMax >= 1 {
		if e.cfg.Stem != "" {
			s.words = s.words[:0]
			for _, t := range s.tokens {
				s.words = append(s.words, token{stem(t), t.kind})
			}
		} else {
			s.words = append(s.words[:0], s.tokens...)
		}
		for i := range s.words {
			add(fnvString(fnvByte(fnvOffset, nsWord1), s.words[i].text))
			for n := 2; n <= e.cfg.WordNgramMax && i+n <= len(s.words); n++ {
				ns := byte(nsWordN)
				if n == 2 {
					ns = nsWord2
				}
				h := fnvByte(fnvByte(fnvOffset, ns), byte(n))
				for j := i; j < i+n; j++ {
					h = fnvByte(fnvString(h, s.words[j].text), ' ')
				}
				add(h)
			}
		}
	}
	if e.cfg.CharNgramMax > 0 {
		for _, t := range s.tokens {
			if t.kind != kindWord {
				continue
			}
			e.charGrams(t.text, s, addChar)
		}
	}
	slices.Sort(s.hashes)
	s.terms = s.terms[:0]
	for i, h := range s.hashes {
		if i > 0 && h == s.hashes[i-1] {
			s.terms[len(s.terms)-1].count++
			continue
		}
		s.terms = append(s.terms, term{h, 1})
	}
	return truncated
}

// stem applies the English Snowball stemmer to plain ASCII words only;
// other scripts and symbols pass through unchanged.
func stem(t token) string {
	if t.kind != kindWord || len(t.text) < 4 {
		return t.text
	}
	for i := 0; i < len(t.text); i++ {
		if c := t.text[i]; c < 'a' || c > 'z' {
			return t.text
		}
	}
	return english.Stem(t.text, false)
}

// charGrams hashes character n-grams of " word " (sklearn's char_wb), so
// prefixes and suffixes are marked and grams never span two words.
func (e *Extractor) charGrams(word string, s *scratch, add func(uint64)) {
	s.buf = append(append(append(s.buf[:0], ' '), word...), ' ')
	s.runes = s.runes[:0]
	for i := 0; i < len(s.buf); {
		s.runes = append(s.runes, i)
		_, size := utf8.DecodeRune(s.buf[i:])
		i += size
	}
	s.runes = append(s.runes, len(s.buf))
	nr := len(s.runes) - 1
	for n := e.cfg.CharNgramMin; n <= e.cfg.CharNgramMax; n++ {
		if n > nr {
			break
		}
		for i := 0; i+n <= nr; i++ {
			h := fnvByte(fnvByte(fnvOffset, nsChar), byte(n))
			for _, b := range s.buf[s.runes[i]:s.runes[i+n]] {
				h = fnvByte(h, b)
			}
			add(h)
		}
		if n >= nr { // longer grams would all equal the whole padded word
			break
		}
	}
}

// group is 0 for word n-gram buckets, 1 for character n-gram buckets.
func (e *Extractor) group(bucket uint32) int {
	if bucket&e.charBit != 0 {
		return 1
	}
	return 0
}

// Vocab is the learned part of the featuriser: the hashed buckets kept at
// training time, in ascending order, and their IDF weights. Feature id i+1
// refers to Buckets[i]; id 0 is the padding id.
type Vocab struct {
	Buckets []uint32
	IDF     []float32
	index   *bucketIndex
}

// NewVocab checks and indexes buckets and idf.
func NewVocab(buckets []uint32, idf []float32) (*Vocab, error) {
	if len(buckets) != len(idf) {
		return nil, fmt.Errorf("vocab: %d buckets but %d idf weights", len(buckets), len(idf))
	}
	v := &Vocab{Buckets: buckets, IDF: idf, index: newBucketIndex(len(buckets))}
	for i, b := range buckets {
		if i > 0 && buckets[i-1] >= b {
			return nil, fmt.Errorf("vocab: buckets not strictly ascending at %d", i)
		}
		if f := float64(idf[i]); math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
			return nil, fmt.Errorf("vocab: bad idf %v at %d", idf[i], i)
		}
		v.index.put(b, int32(i+1))
	}
	return v, nil
}

// Size is the number of feature ids including the padding id 0.
func (v *Vocab) Size() int { return len(v.Buckets) + 1 }

// Fit learns the vocabulary and smoothed IDF (ln((1+n)/(1+df)) + 1, as in
// scikit-learn) from training texts.
func (e *Extractor) Fit(texts []string) (*Vocab, error) {
	if len(texts) == 0 {
		return nil, errors.New("fit vocabulary: no texts")
	}
	df := make(map[uint32]int32, 1<<16)
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	for _, t := range texts {
		e.extract(t, s)
		for _, t := range s.terms {
			df[t.bucket]++
		}
	}
	buckets := make([]uint32, 0, len(df))
	for b, n := range df {
		if int(n) >= e.cfg.MinDF {
			buckets = append(buckets, b)
		}
	}
	if len(buckets) == 0 {
		return nil, fmt.Errorf("fit vocabulary: no feature occurs in %d or more texts", e.cfg.MinDF)
	}
	slices.Sort(buckets)
	idf := make([]float32, len(buckets))
	n := float64(len(texts))
	for i, b := range buckets {
		idf[i] = float32(math.Log((1+n)/(1+float64(df[b]))) + 1)
	}
	return NewVocab(buckets, idf)
}

// Vector is one text's features: ascending ids into the vocabulary and their
// L2-normalised TF-IDF weights.
type Vector struct {
	IDs       []int64
	Weights   []float32
	Truncated bool // text exceeded MaxRunes and was cut
	// Terms counts the distinct n-grams the text produced and Unseen those
	// of them outside the vocabulary: the monitor's out-of-vocabulary rate,
	// a cheap sign that traffic has moved away from the training text.
	Terms, Unseen int
}

// OOVRate is the share of the text's distinct n-grams unseen in training
// (0 for a text with none).
func (v Vector) OOVRate() float64 {
	if v.Terms == 0 {
		return 0
	}
	return float64(v.Unseen) / float64(v.Terms)
}

// AppendDense returns new vectors: each of vs followed by its
// embedding row (dim values of emb) as features offset..offset+dim-1,
// multiplied by scale. Training and serving share it so the head sees the
// same layout in both.
func AppendDense(vs []Vector, emb []float32, dim, offset int, scale float32) []Vector {
	out := make([]Vector, len(vs))
	for i, v := range vs {
		n := len(v.IDs)
		ids := make([]int64, n+dim)
		ws := make([]float32, n+dim)
		copy(ids, v.IDs)
		copy(ws, v.Weights)
		for j := range dim {
			ids[n+j] = int64(offset + j)
			ws[n+j] = scale * emb[i*dim+j]
		}
		out[i] = Vector{IDs: ids, Weights: ws, Truncated: v.Truncated, Terms: v.Terms, Unseen: v.Unseen}
	}
	return out
}

// Featurizer couples an Extractor with a fitted Vocab.
type Featurizer struct {
	ext   *Extractor
	vocab *Vocab
}

// New builds a serving/training featuriser from config and vocabulary.
func New(cfg Config, vocab *Vocab) (*Featurizer, error) {
	ext, err := NewExtractor(cfg)
	if err != nil {
		return nil, err
	}
	if vocab == nil || len(vocab.Buckets) == 0 {
		return nil, errors.New("featurizer: empty vocabulary")
	}
	if vocab.index == nil {
		if vocab, err = NewVocab(vocab.Buckets, vocab.IDF); err != nil {
			return nil, err
		}
	}
	return &Featurizer{ext: ext, vocab: vocab}, nil
}

// Config returns the featuriser configuration.
func (f *Featurizer) Config() Config { return f.ext.cfg }

// Vocab returns the fitted vocabulary.
func (f *Featurizer) Vocab() *Vocab { return f.vocab }

// Transform computes the feature vector of text: sublinear TF (1+ln tf)
// times IDF, restricted to the vocabulary, L2-normalised. A text with no
// known feature yields an empty vector (the model then predicts its prior).
func (f *Featurizer) Transform(text string) Vector {
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	truncated := f.ext.extract(text, s)
	v := Vector{Truncated: truncated, IDs: make([]int64, 0, len(s.terms)), Weights: make([]float32, 0, len(s.terms)), Terms: len(s.terms)}
	counts := s.hashes[:0] // reuse: raw counts of the kept terms, aligned with v.IDs
	for _, t := range s.terms {
		if id := f.vocab.index.get(t.bucket); id != 0 {
			v.IDs = append(v.IDs, int64(id)) // ascending: buckets ascend and ids follow bucket order
			counts = append(counts, uint32(t.count))
		}
	}
	v.Unseen = v.Terms - len(v.IDs)
	// Word and character groups are L2-normalised separately (like a union
	// of two TF-IDF vectorisers): character grams outnumber words ~10:1 and
	// would otherwise drown them. The whole vector then has unit norm.
	var norm [2]float64
	for i, id := range v.IDs {
		b := f.vocab.Buckets[id-1]
		w := sublinearTF(counts[i]) * float64(f.vocab.IDF[id-1])
		v.Weights = append(v.Weights, float32(w))
		norm[f.ext.group(b)] += w * w
	}
	share := [2]float64{f.ext.cfg.WordShare, 1 - f.ext.cfg.WordShare}
	if norm[0] == 0 || norm[1] == 0 {
		share = [2]float64{1, 1}
	}
	var scale [2]float64
	for g := range norm {
		if norm[g] > 0 {
			scale[g] = math.Sqrt(share[g] / norm[g])
		}
	}
	for i, id := range v.IDs {
		v.Weights[i] = float32(float64(v.Weights[i]) * scale[f.ext.group(f.vocab.Buckets[id-1])])
	}
	return v
}

// Batch packs vectors into the padded [batch, length] arrays the ONNX model
// takes; padding uses id 0 with weight 0, which contributes nothing.
func Batch(vs []Vector) (ids []int64, weights []float32, length int) {
	for _, v := range vs {
		length = max(length, len(v.IDs))
	}
	length = max(length, 1) // ORT rejects zero-sized dims in some kernels
	ids = make([]int64, len(vs)*length)
	weights = make([]float32, len(vs)*length)
	for i, v := range vs {
		copy(ids[i*length:], v.IDs)
		copy(weights[i*length:], v.Weights)
	}
	return ids, weights, length
}

// bucketIndex maps bucket -> feature id with open addressing: every text
// looks up a few hundred buckets, and a flat probe table is several times
// faster than a Go map for uint32 keys. Id 0 means absent.
type bucketIndex struct {
	keys  []uint32
	ids   []int32
	mask  uint32
	shift uint32
}

func newBucketIndex(n int) *bucketIndex {
	size, bits := 1, uint32(0)
	for size < 2*n+2 { // load factor <= 0.5 keeps probes short
		size <<= 1
		bits++
	}
	return &bucketIndex{keys: make([]uint32, size), ids: make([]int32, size), mask: uint32(size - 1), shift: 32 - bits}
}

func (x *bucketIndex) slot(b uint32) uint32 {
	return (b * 2654435769) >> x.shift // Fibonacci hashing spreads clustered buckets
}

func (x *bucketIndex) put(b uint32, id int32) {
	for i := x.slot(b); ; i = (i + 1) & x.mask {
		if x.ids[i] == 0 || x.keys[i] == b {
			x.keys[i], x.ids[i] = b, id
			return
		}
	}
}

func (x *bucketIndex) get(b uint32) int32 {
	for i := x.slot(b); ; i = (i + 1) & x.mask {
		switch {
		case x.ids[i] == 0:
			return 0
		case x.keys[i] == b:
			return x.ids[i]
		}
	}
}

// tfTable caches 1+ln(count) for the counts nearly every term has.
var tfTable = func() (t [32]float64) {
	for c := 1; c < len(t); c++ {
		t[c] = 1 + math.Log(float64(c))
	}
	return t
}()

func sublinearTF(count uint32) float64 {
	if count < uint32(len(tfTable)) {
		return tfTable[count]
	}
	return 1 + math.Log(float64(count))
}
