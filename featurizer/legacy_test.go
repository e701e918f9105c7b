package featurizer

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/kljensen/snowball/english"
	"golang.org/x/text/unicode/norm"
)

// The sort-based featuriser as it was before the counting table, kept as
// the reference the current one must match exactly and the baseline the
// benchmarks compare against.

type legacyScratch struct {
	tokens []token
	words  []token
	hashes []uint32
	terms  []term
	runes  []int
	buf    []byte
}

func legacyNormalize(text string, maxRunes int) (normalized string, truncated bool) {
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	if maxRunes > 0 && len(text) > maxRunes {
		n := 0
		for i := range text {
			if n == maxRunes {
				text = text[:i]
				truncated = true
				break
			}
			n++
		}
	}
	if lower, ok := asciiLower(text); ok {
		return lower, truncated
	}
	c := folder
	c.Reset()
	return c.String(norm.NFKC.String(text)), truncated
}

func legacyTokenize(text string, dst []token) []token {
	start := -1
	flush := func(end int) {
		if start >= 0 {
			w := strings.Trim(text[start:end], "'")
			if w != "" {
				dst = append(dst, token{w, kindWord})
			}
			start = -1
		}
	}
	for i, r := range text {
		switch {
		case isCJK(r):
			flush(i)
			dst = append(dst, token{text[i : i+utf8.RuneLen(r)], kindWord})
		case isWordRune(r):
			if start < 0 {
				start = i
			}
		case unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError:
			flush(i)
		default:
			flush(i)
			dst = append(dst, token{text[i : i+utf8.RuneLen(r)], kindSymbol})
		}
	}
	flush(len(text))
	return dst
}

func legacyStem(t token) string {
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

func (e *Extractor) legacyExtract(text string, s *legacyScratch) (truncated bool) {
	s.hashes = s.hashes[:0]
	norm, truncated := legacyNormalize(text, e.cfg.MaxRunes)
	s.tokens = legacyTokenize(norm, s.tokens[:0])
	add := func(h uint64) { s.hashes = append(s.hashes, uint32(h&e.mask)) }
	addChar := func(h uint64) { s.hashes = append(s.hashes, uint32(h&e.mask)|e.charBit) }

	if e.cfg.WordNgramMax >= 1 {
		if e.cfg.Stem != "" {
			s.words = s.words[:0]
			for _, t := range s.tokens {
				s.words = append(s.words, token{legacyStem(t), t.kind})
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
			e.legacyCharGrams(t.text, s, addChar)
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

func (e *Extractor) legacyCharGrams(word string, s *legacyScratch, add func(uint64)) {
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
		if n >= nr {
			break
		}
	}
}

func (e *Extractor) legacyFit(texts []string) (*Vocab, error) {
	if len(texts) == 0 {
		return nil, errors.New("fit vocabulary: no texts")
	}
	df := make(map[uint32]int32, 1<<16)
	s := &legacyScratch{}
	for _, t := range texts {
		e.legacyExtract(t, s)
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

func (f *Featurizer) legacyTransform(text string, s *legacyScratch) Vector {
	truncated := f.ext.legacyExtract(text, s)
	v := Vector{Truncated: truncated, IDs: make([]int64, 0, len(s.terms)), Weights: make([]float32, 0, len(s.terms)), Terms: len(s.terms)}
	counts := s.hashes[:0]
	for _, t := range s.terms {
		if id := f.vocab.index.get(t.bucket); id != 0 {
			v.IDs = append(v.IDs, int64(id))
			counts = append(counts, uint32(t.count))
		}
	}
	v.Unseen = v.Terms - len(v.IDs)
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
