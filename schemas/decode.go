package schemas

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// DecodeInput validates raw against the input schema and returns it as an
// Input. Errors are *ValidationError wrapping ErrInvalidJSON or ErrSchema.
//
// The document is parsed once: the validated JSON value is converted to the
// Input directly rather than parsed a second time. The result is what
// json.Unmarshal would give for a valid document, except that property
// names match exactly (the schema already rejects any other name) and that
// a created_at the schema accepts but time.Time cannot hold (a leap second,
// ":60") is an ErrSchema error at /created_at, where Validate alone
// accepts it.
func DecodeInput(raw []byte) (Input, error) {
	v, err := ValidatorFor(KindInput)
	if err != nil {
		return Input{}, err
	}
	doc, err := parseJSON(raw)
	if err != nil {
		return Input{}, parseError(KindInput, err)
	}
	if err := v.validateDoc(doc); err != nil {
		return Input{}, err
	}
	obj := doc.(map[string]any) // the schema requires an object
	in := Input{ID: obj["id"].(string), Text: obj["text"].(string)}
	if s, ok := obj["source"].(string); ok {
		in.Source = s
	}
	if s, ok := obj["created_at"].(string); ok {
		t, err := parseTime(s)
		if err != nil {
			return Input{}, violation(KindInput, "/created_at", "format", err.Error())
		}
		in.CreatedAt = &t
	}
	if m, ok := obj["metadata"].(map[string]any); ok {
		in.Metadata = m
	}
	return in, nil
}

// Decode validates raw against kind's schema and then unmarshals it into
// out (a pointer, normally to the kind's Go type). Errors from validation
// are *ValidationError; an unmarshal error after a passing validation (a
// value the schema allows but the Go type cannot hold) wraps ErrSchema.
func Decode(kind Kind, raw []byte, out any) error {
	v, err := ValidatorFor(kind)
	if err != nil {
		return err
	}
	if err := v.Validate(raw); err != nil {
		return err
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return &ValidationError{Kind: kind, Err: ErrSchema, Message: err.Error(),
			Violations: []Violation{{Message: err.Error()}}}
	}
	return nil
}

func violation(k Kind, ptr, kw, msg string) *ValidationError {
	v := Violation{Pointer: ptr, Keyword: kw, Message: msg}
	return &ValidationError{Kind: k, Err: ErrSchema, Pointer: ptr, Keyword: kw, Message: msg, Violations: []Violation{v}}
}

// parseTime parses an RFC 3339 date-time the schema's format check has
// accepted. RFC 3339 allows a lower-case "t" and "z", which time.Parse
// does not; a leap second (":60") is accepted by the format check but
// cannot be represented by time.Time, and is reported.
func parseTime(s string) (time.Time, error) {
	if strings.ContainsAny(s, "tz") {
		s = strings.ToUpper(s)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("date-time %q is valid RFC 3339 but not representable (a leap second?)", s)
	}
	return t, nil
}
