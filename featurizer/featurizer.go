package featurizer

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/kljensen/snowball/english"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
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
	tokens  []token
	words   []token  // tokens as word n-grams see them (stemmed when configured)
	hashes  []uint32 // every bucket occurrence, in text order
	terms   []term   // distinct buckets with counts, in first-seen order
	runes   []int    // byte offsets of rune starts in the padded word
	buf     []byte
	norm    []byte // backing store of the normalised text
	fold    []byte // NFKC output before case folding
	nfkc    norm.Iter
	folder  transform.Transformer
	kept    []uint64 // Transform: id<<32 | group<<31 | count of in-vocabulary terms
	tmp     []uint64 // sortByID's buffers
	buckets []int32
	counts  counter
	stems   *stemCache
}

var scratchPool = sync.Pool{New: func() any { return &scratch{} }}

// counter counts bucket occurrences in an open-addressed table reused across
// texts: counting a few hundred buckets this way is several times cheaper
// than sorting them, and only the slots a text used are cleared afterwards.
type counter struct {
	slots []term   // count 0 marks an empty slot
	used  []uint32 // occupied slot indexes, in first-seen order
	shift uint32
}

const counterMinBits = 10 // 1024 slots (8 KiB) cover typical short texts

func (c *counter) init(bits uint32) {
	c.slots = make([]term, 1<<bits)
	c.shift = 32 - bits
}

// grow doubles the table, keeping the first-seen order of used.
func (c *counter) grow() {
	old := c.slots
	c.init(32 - c.shift + 1)
	mask := uint32(len(c.slots) - 1)
	for k, u := range c.used {
		t := old[u]
		i := (t.bucket * 2654435769) >> c.shift
		for c.slots[i].count != 0 {
			i = (i + 1) & mask
		}
		c.slots[i] = t
		c.used[k] = i
	}
}

// count appends the distinct buckets of hashes, with their counts, to
// terms and leaves the table empty again.
func (c *counter) count(hashes []uint32, terms []term) []term {
	if c.slots == nil {
		c.init(counterMinBits)
	}
	c.used = c.used[:0]
	mask := uint32(len(c.slots) - 1)
	for _, b := range hashes {
		i := (b * 2654435769) >> c.shift // Fibonacci hashing, as in bucketIndex
		for {
			t := &c.slots[i]
			if t.count == 0 {
				*t = term{b, 1}
				c.used = append(c.used, i)
				if 2*len(c.used) > len(c.slots) { // load factor <= 0.5 keeps probes short
					c.grow()
					mask = uint32(len(c.slots) - 1)
				}
				break
			}
			if t.bucket == b {
				t.count++
				break
			}
			i = (i + 1) & mask
		}
	}
	for _, u := range c.used {
		terms = append(terms, c.slots[u])
		c.slots[u] = term{}
	}
	return terms
}

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

// extract fills s.terms with the distinct hashed buckets of text and their
// counts, in no particular order.
func (e *Extractor) extract(text string, s *scratch) (truncated bool) {
	s.hashes = s.hashes[:0]
	text, truncated = s.normalize(text, e.cfg.MaxRunes)
	s.tokens = tokenize(text, s.tokens[:0])

	if e.cfg.WordNgramMax >= 1 {
		words := s.tokens
		if e.cfg.Stem != "" {
			if s.stems == nil {
				s.stems = new(stemCache)
			}
			s.words = s.words[:0]
			for _, t := range s.tokens {
				s.words = append(s.words, token{s.stems.stem(t), t.kind})
			}
			words = s.words
		}
		for i := range words {
			s.hashes = append(s.hashes, uint32(fnvString(fnvByte(fnvOffset, nsWord1), words[i].text)&e.mask))
			for n := 2; n <= e.cfg.WordNgramMax && i+n <= len(words); n++ {
				ns := byte(nsWordN)
				if n == 2 {
					ns = nsWord2
				}
				h := fnvByte(fnvByte(fnvOffset, ns), byte(n))
				for j := i; j < i+n; j++ {
					h = fnvByte(fnvString(h, words[j].text), ' ')
				}
				s.hashes = append(s.hashes, uint32(h&e.mask))
			}
		}
	}
	if e.cfg.CharNgramMax > 0 {
		for _, t := range s.tokens {
			if t.kind != kindWord {
				continue
			}
			e.charGrams(t.text, s)
		}
	}
	s.terms = s.counts.count(s.hashes, s.terms[:0])
	return truncated
}

// stemmable limits the English Snowball stemmer to plain ASCII words;
// other scripts and symbols pass through unchanged.
func stemmable(t token) bool {
	if t.kind != kindWord || len(t.text) < 4 {
		return false
	}
	for i := 0; i < len(t.text); i++ {
		if c := t.text[i]; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// stemCache remembers recent stems: the Snowball stemmer allocates and costs
// about as much as the rest of featurisation, while traffic repeats a small
// vocabulary. Direct-mapped and per scratch, so bounded and lock-free.
type stemCache struct {
	entries [stemCacheSize]struct{ word, stem string }
}

const stemCacheSize = 4096 // 128 KiB per scratch; cycling through Banking77, 0.18 misses per text

func (c *stemCache) stem(t token) string {
	if !stemmable(t) {
		return t.text
	}
	e := &c.entries[fnvString(fnvOffset, t.text)&(stemCacheSize-1)]
	if e.word != t.text {
		// Clone both: t.text may point into scratch memory or the caller's
		// text, and the stemmer may return (part of) its input.
		e.word, e.stem = strings.Clone(t.text), strings.Clone(english.Stem(t.text, false))
	}
	return e.stem
}

// charGrams hashes character n-grams of " word " (sklearn's char_wb), so
// prefixes and suffixes are marked and grams never span two words.
func (e *Extractor) charGrams(word string, s *scratch) {
	buf := append(append(append(s.buf[:0], ' '), word...), ' ')
	s.buf = buf
	runes := s.runes[:0]
	for i := 0; i < len(buf); {
		runes = append(runes, i)
		if buf[i] < utf8.RuneSelf { // most words are ASCII: skip the decoder
			i++
			continue
		}
		_, size := utf8.DecodeRune(buf[i:])
		i += size
	}
	runes = append(runes, len(buf))
	s.runes = runes
	nr := len(runes) - 1
	hashes := s.hashes
	for n := e.cfg.CharNgramMin; n <= e.cfg.CharNgramMax; n++ {
		if n > nr {
			break
		}
		seed := fnvByte(fnvByte(fnvOffset, nsChar), byte(n))
		for i := 0; i+n <= nr; i++ {
			h := seed
			for _, b := range buf[runes[i]:runes[i+n]] {
				h = fnvByte(h, b)
			}
			hashes = append(hashes, uint32(h&e.mask)|e.charBit)
		}
		if n >= nr { // longer grams would all equal the whole padded word
			break
		}
	}
	s.hashes = hashes
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
	idBits  int // bits needed by the largest feature id
}

// NewVocab checks and indexes buckets and idf.
func NewVocab(buckets []uint32, idf []float32) (*Vocab, error) {
	if len(buckets) != len(idf) {
		return nil, fmt.Errorf("vocab: %d buckets but %d idf weights", len(buckets), len(idf))
	}
	v := &Vocab{Buckets: buckets, IDF: idf, index: newBucketIndex(len(buckets)), idBits: bits.Len(uint(len(buckets)))}
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
// It allocates only the returned slices; see TransformTo to avoid even that.
func (f *Featurizer) Transform(text string) Vector {
	var v Vector
	f.TransformTo(&v, text)
	if v.IDs == nil { // an empty but non-nil vector, as before TransformTo existed
		v.IDs, v.Weights = []int64{}, []float32{}
	}
	return v
}

// TransformTo is Transform writing into dst, for hot loops: it overwrites
// every field of dst and reuses the capacity of dst.IDs and dst.Weights,
// allocating only when they are too short. Slices previously taken from dst
// are therefore overwritten: copy any vector that must outlive the next call.
func (f *Featurizer) TransformTo(dst *Vector, text string) {
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	truncated := f.ext.extract(text, s)
	kept := s.kept[:0]
	for _, t := range s.terms {
		if id := f.vocab.index.get(t.bucket); id != 0 {
			g := uint64(f.ext.group(t.bucket))
			kept = append(kept, uint64(id)<<32|g<<31|uint64(uint32(t.count)&math.MaxInt32))
		}
	}
	// Ascending ids (ids are distinct, so the packed keys sort by id): the
	// norms below are summed in this order, which keeps weights bit-identical
	// to earlier releases, and consumers see the same order as before.
	// Sorting the kept terms is far cheaper than sorting every occurrence.
	s.sortByID(kept, f.vocab.idBits)
	s.kept = kept

	n := len(kept)
	*dst = Vector{IDs: grow(dst.IDs, n), Weights: grow(dst.Weights, n), Truncated: truncated, Terms: len(s.terms), Unseen: len(s.terms) - n}
	// Word and character groups are L2-normalised separately (like a union
	// of two TF-IDF vectorisers): character grams outnumber words ~10:1 and
	// would otherwise drown them. The whole vector then has unit norm.
	var sumSq [2]float64
	for i, k := range kept {
		id := int32(k >> 32)
		w := sublinearTF(uint32(k)&math.MaxInt32) * float64(f.vocab.IDF[id-1])
		dst.IDs[i] = int64(id)
		dst.Weights[i] = float32(w)
		sumSq[k>>31&1] += w * w
	}
	share := [2]float64{f.ext.cfg.WordShare, 1 - f.ext.cfg.WordShare}
	if sumSq[0] == 0 || sumSq[1] == 0 {
		share = [2]float64{1, 1}
	}
	var scale [2]float64
	for g := range sumSq {
		if sumSq[g] > 0 {
			scale[g] = math.Sqrt(share[g] / sumSq[g])
		}
	}
	for i, k := range kept {
		dst.Weights[i] = float32(float64(dst.Weights[i]) * scale[k>>31&1])
	}
}

// sortByID sorts keys ascending by their top 32 bits, ids below
// 1<<idBits. A bucket sort on the id's top bits followed by an insertion
// sort, which only fixes order within buckets: for the hundreds of terms of
// a text it is ~1.7x (160 keys) to ~3x (1000 keys) faster than slices.Sort,
// whose branches mispredict on random keys.
func (s *scratch) sortByID(keys []uint64, idBits int) {
	if len(keys) < 32 || len(keys) > 8192 {
		slices.Sort(keys) // tiny, or so long that a skewed bucket could go quadratic
		return
	}
	// About one key per bucket keeps the insertion sort linear.
	dbits := min(idBits, max(6, min(bits.Len(uint(len(keys))), 12)))
	shift := 32 + idBits - dbits
	s.buckets = grow(s.buckets, 1<<dbits)
	c := s.buckets
	clear(c)
	for _, k := range keys {
		c[k>>shift]++
	}
	sum := int32(0)
	for d, n := range c {
		c[d] = sum
		sum += n
	}
	s.tmp = grow(s.tmp, len(keys))
	tmp := s.tmp
	for _, k := range keys {
		d := k >> shift
		tmp[c[d]] = k
		c[d]++
	}
	for i, k := range tmp {
		j := i
		for ; j > 0 && keys[j-1] > k; j-- {
			keys[j] = keys[j-1]
		}
		keys[j] = k
	}
}

// grow returns b resized to n, reusing its array when large enough.
func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
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
// faster than a Go map for uint32 keys. Key and id share a slot so a lookup
// in a table larger than the cache misses once, not twice. Id 0 means absent.
type bucketIndex struct {
	slots []indexSlot
	mask  uint32
	shift uint32
}

type indexSlot struct {
	key uint32
	id  int32
}

func newBucketIndex(n int) *bucketIndex {
	size, bits := 1, uint32(0)
	for size < 2*n+2 { // load factor <= 0.5 keeps probes short
		size <<= 1
		bits++
	}
	return &bucketIndex{slots: make([]indexSlot, size), mask: uint32(size - 1), shift: 32 - bits}
}

func (x *bucketIndex) slot(b uint32) uint32 {
	return (b * 2654435769) >> x.shift // Fibonacci hashing spreads clustered buckets
}

func (x *bucketIndex) put(b uint32, id int32) {
	for i := x.slot(b); ; i = (i + 1) & x.mask {
		if s := &x.slots[i]; s.id == 0 || s.key == b {
			*s = indexSlot{b, id}
			return
		}
	}
}

func (x *bucketIndex) get(b uint32) int32 {
	for i := x.slot(b); ; i = (i + 1) & x.mask {
		switch s := x.slots[i]; {
		case s.id == 0:
			return 0
		case s.key == b:
			return s.id
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
