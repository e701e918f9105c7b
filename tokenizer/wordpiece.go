// Package tokenizer is BERT's WordPiece tokenizer in Go: text cleaning, CJK
// character splitting, optional lower-casing and accent stripping,
// punctuation splitting, and greedy longest-match-first word pieces — the
// same steps, in the same order, as Hugging Face's BertNormalizer,
// BertPreTokenizer and WordPiece model, so ids match for a given vocab.txt.
package tokenizer

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Options mirror the BERT tokenizer settings of a checkpoint.
type Options struct {
	Lowercase bool // lower-case (uncased checkpoints)
	// StripAccents removes combining marks after NFD; nil follows Lowercase,
	// as BertNormalizer does.
	StripAccents          *bool
	MaxInputCharsPerWord  int // longer words become [UNK]; default 100
	UnknownToken          string
	ContinuingSubwordMark string // default "##"
	// ClsToken and SepToken open and close every encoded text: BERT's [CLS]
	// and [SEP] by default; MPNet's are <s> and </s>.
	ClsToken, SepToken string
}

// WordPiece tokenizes text into vocabulary ids.
type WordPiece struct {
	vocab  map[string]int32
	tokens []string
	opts   Options
	unk    int32
	cls    int32 // opts.ClsToken's id
	sep    int32 // opts.SepToken's id
}

// Special tokens BERT models expect.
const (
	CLS = "[CLS]"
	SEP = "[SEP]"
	PAD = "[PAD]"
	UNK = "[UNK]"
)

// LoadVocab reads a vocab.txt: one token per line, id = line number.
func LoadVocab(path string, opts Options) (*WordPiece, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load vocab: %w", err)
	}
	defer f.Close()
	w, err := ReadVocab(f, opts)
	if err != nil {
		return nil, fmt.Errorf("load vocab %q: %w", path, err)
	}
	return w, nil
}

// ReadVocab reads vocab.txt content.
func ReadVocab(r io.Reader, opts Options) (*WordPiece, error) {
	w := &WordPiece{vocab: map[string]int32{}, opts: opts}
	if w.opts.MaxInputCharsPerWord == 0 {
		w.opts.MaxInputCharsPerWord = 100
	}
	if w.opts.UnknownToken == "" {
		w.opts.UnknownToken = UNK
	}
	if w.opts.ContinuingSubwordMark == "" {
		w.opts.ContinuingSubwordMark = "##"
	}
	w.opts.ClsToken = cmp.Or(w.opts.ClsToken, CLS)
	w.opts.SepToken = cmp.Or(w.opts.SepToken, SEP)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), 1<<20)
	for sc.Scan() {
		tok := strings.TrimRight(sc.Text(), "\r")
		if _, dup := w.vocab[tok]; !dup {
			w.vocab[tok] = int32(len(w.tokens))
		}
		w.tokens = append(w.tokens, tok)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	unk, ok := w.vocab[w.opts.UnknownToken]
	if !ok {
		return nil, fmt.Errorf("vocabulary has no %s token", w.opts.UnknownToken)
	}
	w.unk = unk
	// Encoding cannot work without the boundary tokens: refuse now rather
	// than on the first text.
	var ok1, ok2 bool
	w.cls, ok1 = w.vocab[w.opts.ClsToken]
	w.sep, ok2 = w.vocab[w.opts.SepToken]
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("vocabulary has no %s or no %s token", w.opts.ClsToken, w.opts.SepToken)
	}
	return w, nil
}

// ID returns a token's id.
func (w *WordPiece) ID(token string) (int32, bool) {
	id, ok := w.vocab[token]
	return id, ok
}

// Size is the vocabulary size.
func (w *WordPiece) Size() int { return len(w.tokens) }

// Token returns the token of an id.
func (w *WordPiece) Token(id int32) string { return w.tokens[id] }

// Normalize applies BertNormalizer: clean text, pad CJK characters with
// spaces, strip accents, lower-case — in that order.
func (w *WordPiece) Normalize(text string) string {
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	var b strings.Builder
	b.Grow(len(text) + 8)
	for _, r := range text {
		switch {
		case r == 0 || r == 0xFFFD || isControl(r):
			continue
		case isWhitespace(r):
			b.WriteByte(' ')
		case isChineseChar(r):
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	out := b.String()
	strip := w.opts.Lowercase
	if w.opts.StripAccents != nil {
		strip = *w.opts.StripAccents
	}
	if strip {
		var s strings.Builder
		for _, r := range norm.NFD.String(out) {
			if !unicode.Is(unicode.Mn, r) {
				s.WriteRune(r)
			}
		}
		out = s.String()
	}
	if w.opts.Lowercase {
		out = lowercase(out)
	}
	return out
}

// lowercase maps rune by rune, as Rust's char::to_lowercase does in the
// reference implementation: no context rules (final sigma stays σ), and
// U+0130 becomes "i̇", its one unconditional multi-rune mapping.
func lowercase(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r == 0x130 {
			b.WriteString("i\u0307")
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// PreTokenize applies BertPreTokenizer: split on whitespace, then make
// every punctuation character its own word.
func PreTokenize(text string) []string {
	var words []string
	start := -1
	for i, r := range text {
		switch {
		case isWhitespace(r):
			if start >= 0 {
				words = append(words, text[start:i])
				start = -1
			}
		case isPunctuation(r):
			if start >= 0 {
				words = append(words, text[start:i])
				start = -1
			}
			words = append(words, text[i:i+utf8.RuneLen(r)])
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		words = append(words, text[start:])
	}
	return words
}

// wordPieces splits one word greedily, longest match first; a word with
// any unmatched remainder, or longer than the limit, becomes [UNK].
func (w *WordPiece) wordPieces(word string, dst []int32) []int32 {
	if utf8.RuneCountInString(word) > w.opts.MaxInputCharsPerWord {
		return append(dst, w.unk)
	}
	mark := len(dst)
	for start := 0; start < len(word); {
		end := len(word)
		found := int32(-1)
		for end > start {
			piece := word[start:end]
			if start > 0 {
				piece = w.opts.ContinuingSubwordMark + piece
			}
			if id, ok := w.vocab[piece]; ok {
				found = id
				break
			}
			_, size := utf8.DecodeLastRuneInString(word[start:end])
			end -= size
		}
		if found < 0 {
			return append(dst[:mark], w.unk)
		}
		dst = append(dst, found)
		start = end
	}
	return dst
}

// Tokenize returns the word-piece ids of text, without special tokens.
func (w *WordPiece) Tokenize(text string) []int32 {
	var ids []int32
	for _, word := range PreTokenize(w.Normalize(text)) {
		ids = w.wordPieces(word, ids)
	}
	return ids
}

// Encoding is one text ready for a BERT model.
type Encoding struct {
	IDs           []int64 `json:"ids"`
	AttentionMask []int64 `json:"attention_mask"`
	TypeIDs       []int64 `json:"token_type_ids"`
	Truncated     bool    `json:"truncated,omitempty"`
}

// ErrMaxLength is returned for a max length too small for the opening and
// closing tokens.
var ErrMaxLength = errors.New("max length must be at least 2")

// Encode is EncodeIDs plus the model's padded inputs: [PAD] up to padTo
// (0 = no padding), the attention mask and the token type ids.
func (w *WordPiece) Encode(text string, maxLen, padTo int) (Encoding, error) {
	ids, truncated, err := w.EncodeIDs(text, maxLen)
	if err != nil {
		return Encoding{}, err
	}
	n := len(ids)
	size := max(n, padTo)
	e := Encoding{IDs: ids, Truncated: truncated, AttentionMask: make([]int64, size), TypeIDs: make([]int64, size)}
	for i := range n {
		e.AttentionMask[i] = 1
	}
	if size > n {
		pad, ok := w.vocab[PAD]
		if !ok {
			return Encoding{}, errors.New("vocabulary lacks [PAD]")
		}
		e.IDs = append(e.IDs, make([]int64, size-n)...)
		for i := n; i < size; i++ {
			e.IDs[i] = int64(pad)
		}
	}
	return e, nil
}

// EncodeIDs frames the pieces with [CLS] … [SEP] (or the tokenizer's own
// boundary tokens), truncated to fit maxLen (0 = no limit). It is the serving
// path, where the mask is implied by the length; Encode pads on top of it.
func (w *WordPiece) EncodeIDs(text string, maxLen int) (ids []int64, truncated bool, err error) {
	if maxLen != 0 && maxLen < 2 {
		return nil, false, ErrMaxLength
	}
	pieces := w.Tokenize(text)
	if maxLen > 0 && len(pieces) > maxLen-2 {
		pieces, truncated = pieces[:maxLen-2], true
	}
	ids = make([]int64, len(pieces)+2)
	ids[0] = int64(w.cls)
	for i, p := range pieces {
		ids[i+1] = int64(p)
	}
	ids[len(ids)-1] = int64(w.sep)
	return ids, truncated, nil
}

// The character classes below follow BERT's reference implementation.

func isWhitespace(r rune) bool {
	return unicode.IsSpace(r) // the White_Space property, as Rust's char::is_whitespace
}

func isControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	// Cc, Cf, Co, Cs, and Cn (unassigned: in no category at all).
	return unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs) || !isAssigned(r)
}

func isAssigned(r rune) bool {
	for _, t := range unicode.Categories {
		if unicode.Is(t, r) {
			return true
		}
	}
	return false
}

// isPunctuation counts all ASCII non-letters/digits as punctuation ("$", "^",
// "`" are symbols in Unicode but BERT splits them too).
func isPunctuation(r rune) bool {
	if (r >= 33 && r <= 47) || (r >= 58 && r <= 64) || (r >= 91 && r <= 96) || (r >= 123 && r <= 126) {
		return true
	}
	return unicode.IsPunct(r)
}

// isChineseChar covers the CJK Unified Ideographs blocks, as BERT defines
// them (not Hiragana, Katakana or Hangul).
func isChineseChar(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) || (r >= 0x3400 && r <= 0x4DBF) || (r >= 0x20000 && r <= 0x2A6DF) ||
		(r >= 0x2A700 && r <= 0x2B73F) || (r >= 0x2B740 && r <= 0x2B81F) || (r >= 0x2B820 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) || (r >= 0x2F800 && r <= 0x2FA1F)
}
