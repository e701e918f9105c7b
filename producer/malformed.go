package producer

import (
	"encoding/json"
	"math"
	"strings"

	"github.com/triage-ml/triage/schemas"
)

// Kinds of malformed input records mixed in by Config.BadRatio, to exercise
// the consumer's dead-letter path.
const (
	BadInvalidJSON    = "invalid_json"    // truncated JSON document
	BadMissingID      = "missing_id"      // no "id" property
	BadEmptyText      = "empty_text"      // "text": ""
	BadWhitespaceText = "whitespace_text" // "text" of spaces, tabs and newlines
	BadInvalidUTF8    = "invalid_utf8"    // raw 0xff 0xfe bytes inside the text
	BadTooLongText    = "text_too_long"   // text of more than TooLongTextBytes
	BadWrongTypes     = "wrong_types"     // "id" a number, "text" an array
)

// TooLongTextBytes is the least length of a BadTooLongText text: one byte
// over the consumer's default 64 KiB limit.
const TooLongTextBytes = 64<<10 + 1

// HeaderMalformed is the record header naming the kind of a malformed
// record; well-formed records do not carry it.
const HeaderMalformed = "triage-malformed"

// BadKinds lists every malformed kind, in the order they are cycled through.
func BadKinds() []string {
	return []string{BadInvalidJSON, BadMissingID, BadEmptyText, BadWhitespaceText, BadInvalidUTF8, BadTooLongText, BadWrongTypes}
}

// DeadLetterReason is the reason code the consumer gives each malformed
// kind with its default limits.
var DeadLetterReason = map[string]string{
	BadInvalidJSON:    schemas.ReasonInvalidJSON,
	BadMissingID:      schemas.ReasonSchemaViolation,
	BadEmptyText:      schemas.ReasonSchemaViolation, // the schema requires minLength 1
	BadWhitespaceText: schemas.ReasonEmptyText,
	BadInvalidUTF8:    schemas.ReasonInvalidUTF8,
	BadTooLongText:    schemas.ReasonTextTooLong,
	BadWrongTypes:     schemas.ReasonSchemaViolation,
}

// badSchedule spreads exactly round(n*ratio) malformed records evenly over
// the first n, cycling through BadKinds: record n (1-based) is malformed
// when floor(n*ratio) steps up at n.
type badSchedule struct {
	ratio float64
	kinds []string
}

func (b badSchedule) kind(n int) (string, bool) {
	if b.ratio <= 0 {
		return "", false
	}
	const eps = 1e-9 // 0.1*30 is 3.0000000000000004, 0.7*10 is 7.000000000000001: keep floors exact
	now := math.Floor(float64(n)*b.ratio + eps)
	before := math.Floor(float64(n-1)*b.ratio + eps)
	if now <= before {
		return "", false
	}
	return b.kinds[int(now-1)%len(b.kinds)], true
}

// malformed encodes one broken record value of kind for id and text.
func malformed(kind, id, text string) []byte {
	enc := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil { // maps of strings and slices always encode
			panic(err)
		}
		return b
	}
	switch kind {
	case BadInvalidJSON:
		full := enc(map[string]string{"id": id, "text": text})
		return full[:len(full)/2] // an object cut short never parses
	case BadMissingID:
		return enc(map[string]string{"text": text})
	case BadEmptyText:
		return enc(map[string]string{"id": id, "text": ""})
	case BadWhitespaceText:
		return enc(map[string]string{"id": id, "text": " \t \n  "})
	case BadInvalidUTF8:
		return invalidUTF8(enc(map[string]string{"id": id, "text": text + " "}))
	case BadTooLongText:
		long := strings.Repeat(text+" ", TooLongTextBytes/(len(text)+1)+1)
		return enc(map[string]string{"id": id, "text": long})
	case BadWrongTypes:
		return enc(map[string]any{"id": len(id), "text": []string{text}})
	}
	panic("producer: unknown malformed kind " + kind)
}

// invalidUTF8 splices raw 0xff 0xfe bytes into the text of doc, an object
// whose last property is "text" (json.Marshal would have replaced them with
// U+FFFD): the document ends in `..."}`, so they go before the last quote.
func invalidUTF8(doc []byte) []byte {
	b := doc
	end := len(b) - 2
	out := make([]byte, 0, len(b)+2)
	out = append(out, b[:end]...)
	out = append(out, 0xff, 0xfe)
	return append(out, b[end:]...)
}
