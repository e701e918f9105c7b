// Package featurizer turns raw text into sparse, hashed, TF-IDF weighted
// feature vectors. Training and serving call the same code, so a model never
// sees features computed differently from the ones it was trained on.
package featurizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/text/cases"
	"golang.org/x/text/transform"
	"golang.org/x/text/unicode/norm"
)

// folder is safe for concurrent use only through Normalize, which copies it;
// cases.Caser carries state between calls.
var folder = cases.Fold()

// Normalize applies the canonical text normalisation: invalid UTF-8 is
// replaced with U+FFFD (never dropped silently, never a panic), then NFKC and
// Unicode case folding, so "Ｃａｒｄ", "CARD" and "card" meet in one feature.
// maxRunes > 0 truncates the input to that many runes first; truncated reports
// whether it did.
func Normalize(text string, maxRunes int) (normalized string, truncated bool) {
	text, truncated = clip(text, maxRunes)
	if lower, ok := asciiLower(text); ok {
		return lower, truncated // NFKC and case folding reduce to ToLower on ASCII
	}
	c := folder // copy: Caser is stateful
	c.Reset()
	return c.String(norm.NFKC.String(text)), truncated
}

// clip replaces invalid UTF-8 and truncates to maxRunes (when > 0).
func clip(text string, maxRunes int) (string, bool) {
	if !utf8.ValidString(text) {
		text = strings.ToValidUTF8(text, "\uFFFD")
	}
	if maxRunes > 0 && len(text) > maxRunes { // bytes >= runes, so this is a cheap pre-check
		n := 0
		for i := range text {
			if n == maxRunes {
				return text[:i], true
			}
			n++
		}
	}
	return text, false
}

// normalize is Normalize writing into the scratch buffers instead of new
// strings. The result aliases s.norm or s.fold (or text itself), so it is
// valid only until the scratch is next used and must not be retained.
func (s *scratch) normalize(text string, maxRunes int) (string, bool) {
	text, truncated := clip(text, maxRunes)
	ascii, upper := true, false
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
		upper = upper || ('A' <= c && c <= 'Z')
	}
	if ascii && !upper {
		return text, truncated
	}
	if ascii {
		s.norm = append(s.norm[:0], text...)
		for i, c := range s.norm {
			if 'A' <= c && c <= 'Z' {
				s.norm[i] = c + 'a' - 'A'
			}
		}
		return bytesString(s.norm), truncated
	}
	// An Iter kept in the scratch: norm.Form's Append and String allocate
	// their reorder buffer on every call.
	s.fold = s.fold[:0]
	for s.nfkc.InitString(norm.NFKC, text); !s.nfkc.Done(); {
		s.fold = append(s.fold, s.nfkc.Next()...)
	}
	if s.folder == nil {
		s.folder = cases.Fold() // one per scratch: a Caser may carry state between calls
	}
	s.norm, _, _ = transform.Append(s.folder, s.norm[:0], s.fold) // errors ignored, as c.String does
	return bytesString(s.norm), truncated
}

// bytesString views b as a string without copying; b must not change while
// the string is in use.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// asciiLower lower-cases pure-ASCII text without the Unicode machinery; ok
// is false when text has any non-ASCII byte.
func asciiLower(s string) (string, bool) {
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return "", false
		}
		upper = upper || ('A' <= c && c <= 'Z')
	}
	if !upper {
		return s, true
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b), true
}

// tokenKind tells word tokens (which also yield character n-grams) from
// single-rune symbol tokens such as "?" or an emoji.
type tokenKind uint8

const (
	kindWord tokenKind = iota
	kindSymbol
)

type token struct {
	text string
	kind tokenKind
}

// isCJK reports runes of scripts written without spaces between words; each
// becomes its own token (as BERT's basic tokenizer does), and character
// n-grams across them still capture multi-character words.
func isCJK(r rune) bool {
	if r < 0x2E80 { // below CJK Radicals: every Latin, Greek, Cyrillic, Arabic… rune
		return false
	}
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana)
}

// isWordRune keeps combining marks inside words so "café" written with a
// combining accent is one word, not "cafe" plus a stray mark.
func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '\'' || r == '_'
	}
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r) || r == '\'' || r == '_'
}

// tokenize splits normalised text into words and symbols. Whitespace and
// control characters separate tokens and are dropped.
func tokenize(text string, dst []token) []token {
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
		default: // punctuation, symbols, emoji
			flush(i)
			dst = append(dst, token{text[i : i+utf8.RuneLen(r)], kindSymbol})
		}
	}
	flush(len(text))
	return dst
}
