package consumer

import (
	"unicode/utf8"

	"github.com/triage-ml/triage/schemas"
)

// decodeInput is schemas.DecodeInput with a fast path for the common
// record: a flat object of escape-free string members id, text and
// (optionally) source, within the schema's lengths. The generic decoder
// and JSON Schema validator cost ~14 allocations a record; this costs one.
// Anything else — other members, escapes, numbers, duplicates, a length
// outside the schema, invalid JSON — goes to schemas.DecodeInput, so the
// accept/reject decision and the error are the validator's
// (TestDecodeInputAgrees).
func decodeInput(raw []byte) (schemas.Input, error) {
	if in, ok := fastInput(raw); ok && utf8.Valid(raw) {
		return in, nil
	}
	return schemas.DecodeInput(raw)
}

func fastInput(raw []byte) (schemas.Input, bool) {
	// Spans [lo, hi) of id, text and source in raw; lo < 0 when absent.
	var spans [3][2]int
	for i := range spans {
		spans[i][0] = -1
	}
	i := skipWS(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return schemas.Input{}, false
	}
	i = skipWS(raw, i+1)
	for {
		klo, khi, ok := plainString(raw, i)
		if !ok {
			return schemas.Input{}, false
		}
		var field int
		switch string(raw[klo:khi]) { // no allocation: compared in place
		case "id":
			field = 0
		case "text":
			field = 1
		case "source":
			field = 2
		default:
			return schemas.Input{}, false
		}
		if spans[field][0] >= 0 { // duplicate: leave last-wins to the slow path
			return schemas.Input{}, false
		}
		i = skipWS(raw, khi+1)
		if i >= len(raw) || raw[i] != ':' {
			return schemas.Input{}, false
		}
		i = skipWS(raw, i+1)
		vlo, vhi, ok := plainString(raw, i)
		if !ok {
			return schemas.Input{}, false
		}
		spans[field] = [2]int{vlo, vhi}
		i = skipWS(raw, vhi+1)
		if i >= len(raw) {
			return schemas.Input{}, false
		}
		if raw[i] == '}' {
			break
		}
		if raw[i] != ',' {
			return schemas.Input{}, false
		}
		i = skipWS(raw, i+1)
	}
	if skipWS(raw, i+1) != len(raw) || spans[0][0] < 0 || spans[1][0] < 0 {
		return schemas.Input{}, false
	}
	if n := utf8.RuneCount(raw[spans[0][0]:spans[0][1]]); n < 1 || n > 128 { // id: minLength 1, maxLength 128
		return schemas.Input{}, false
	}
	if spans[1][0] == spans[1][1] { // text: minLength 1
		return schemas.Input{}, false
	}
	s := string(raw) // one allocation; the fields are substrings of it
	in := schemas.Input{ID: s[spans[0][0]:spans[0][1]], Text: s[spans[1][0]:spans[1][1]]}
	if spans[2][0] >= 0 {
		in.Source = s[spans[2][0]:spans[2][1]]
	}
	return in, true
}

// skipWS skips JSON whitespace from i.
func skipWS(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}

// plainString finds the JSON string starting at raw[i] and returns its
// contents' span, the closing quote at raw[hi]; ok is false for anything
// but a string with no escapes or control characters.
func plainString(raw []byte, i int) (lo, hi int, ok bool) {
	if i >= len(raw) || raw[i] != '"' {
		return 0, 0, false
	}
	for j := i + 1; j < len(raw); j++ {
		switch c := raw[j]; {
		case c == '"':
			return i + 1, j, true
		case c == '\\' || c < 0x20:
			return 0, 0, false
		}
	}
	return 0, 0, false
}
