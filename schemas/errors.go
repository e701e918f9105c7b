package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Error classes; every error from Validate and the Decode functions wraps
// exactly one of them (test with errors.Is).
var (
	// ErrInvalidJSON: the bytes are not exactly one JSON value in UTF-8.
	ErrInvalidJSON = errors.New("invalid JSON")
	// ErrSchema: the bytes are JSON but the value violates the schema.
	ErrSchema = errors.New("schema violation")
)

// Violation is one failed rule of a schema.
type Violation struct {
	// Pointer is the RFC 6901 JSON pointer of the failing value: "" is the
	// whole document, "/id" its id. For a missing or unknown property it
	// points at that property.
	Pointer string
	// Keyword is the schema keyword that failed: "required", "type",
	// "maxLength", "additionalProperties", "format", ...
	Keyword string
	// Message is short and stable, e.g. "length must be <= 128".
	Message string
}

func (v Violation) String() string {
	p := v.Pointer
	if p == "" {
		p = "(root)"
	}
	return p + ": " + v.Message
}

// ValidationError reports why a document was rejected. Its Error is a short
// summary: for a schema violation, the JSON pointer of the first failing
// value and a message ("/id: length must be <= 128"); for invalid JSON,
// "invalid JSON: " and the parser's message.
type ValidationError struct {
	Kind Kind  // the schema the document was checked against
	Err  error // ErrInvalidJSON or ErrSchema
	// Pointer, Keyword and Message describe the first violation (Pointer
	// and Keyword are empty for invalid JSON).
	Pointer string
	Keyword string
	Message string
	// Violations are all schema violations, in the order the schema
	// declares the properties (then by pointer and keyword), so the result
	// is deterministic; the first is the one summarised above. Empty for
	// invalid JSON.
	Violations []Violation
}

func (e *ValidationError) Error() string {
	if e.Err == ErrInvalidJSON {
		return "invalid JSON: " + e.Message
	}
	s := Violation{Pointer: e.Pointer, Message: e.Message}.String()
	if n := len(e.Violations) - 1; n > 0 {
		s += fmt.Sprintf(" (and %d more)", n)
	}
	return s
}

// Unwrap returns the error class, so errors.Is(err, ErrSchema) works.
func (e *ValidationError) Unwrap() error { return e.Err }

// parseError classifies an error of parseJSON: a number too large for a
// float64 is valid JSON, so a schema violation (encoding/json does not say
// where it is: usually reported at the root); anything else is invalid
// JSON.
func parseError(k Kind, err error) *ValidationError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		ptr := ""
		if te.Field != "" {
			ptr = "/" + strings.ReplaceAll(te.Field, ".", "/")
		}
		return violation(k, ptr, "type", te.Value+" is out of range")
	}
	return invalidJSON(k, err)
}

func invalidJSON(k Kind, err error) *ValidationError {
	msg := err.Error()
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		msg = fmt.Sprintf("%s (at byte %d)", se.Error(), max(se.Offset-1, 0)) // Offset counts the bad byte
	}
	return &ValidationError{Kind: k, Err: ErrInvalidJSON, Message: msg}
}

func checkUTF8(raw []byte) error {
	if utf8.Valid(raw) {
		return nil
	}
	for i := 0; i < len(raw); {
		r, n := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && n == 1 {
			return fmt.Errorf("not valid UTF-8 (at byte %d)", i)
		}
		i += n
	}
	return errors.New("not valid UTF-8")
}

func schemaError(k Kind, ord *order, ve *jsonschema.ValidationError) *ValidationError {
	var vs []ranked
	collect(ve, &vs)
	if len(vs) == 0 { // not expected: every failure has a leaf
		vs = append(vs, ranked{v: Violation{Message: ve.Error()}})
	}
	for i := range vs {
		vs[i].rank = ord.rank(vs[i].tokens)
	}
	slices.SortStableFunc(vs, func(a, b ranked) int {
		if c := slices.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		if c := strings.Compare(a.v.Pointer, b.v.Pointer); c != 0 {
			return c
		}
		return strings.Compare(a.v.Keyword, b.v.Keyword)
	})
	out := make([]Violation, 0, len(vs))
	for _, r := range vs {
		if len(out) == 0 || out[len(out)-1] != r.v {
			out = append(out, r.v)
		}
	}
	first := out[0]
	return &ValidationError{Kind: k, Err: ErrSchema, Pointer: first.Pointer, Keyword: first.Keyword,
		Message: first.Message, Violations: out}
}

type ranked struct {
	v      Violation
	tokens []string
	rank   []int
}

// collect appends the leaves of the library's error tree (the rules that
// actually failed, not the "$ref"/"allOf" nodes above them).
func collect(e *jsonschema.ValidationError, out *[]ranked) {
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			collect(c, out)
		}
		return
	}
	loc := e.InstanceLocation
	kw := strings.Join(e.ErrorKind.KeywordPath(), "/")
	add := func(tokens []string, msg string) {
		*out = append(*out, ranked{v: Violation{Pointer: pointer(tokens), Keyword: kw, Message: msg}, tokens: tokens})
	}
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		for _, m := range k.Missing {
			add(append(slices.Clip(loc), m), "is required")
		}
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			add(append(slices.Clip(loc), p), "unknown property")
		}
	default:
		add(loc, describe(e.ErrorKind))
	}
}

var printer = message.NewPrinter(language.English)

// describe words the common rules briefly; others use the library's text.
func describe(ek jsonschema.ErrorKind) string {
	switch k := ek.(type) {
	case *kind.Type:
		return fmt.Sprintf("must be %s, got %s", strings.Join(k.Want, " or "), k.Got)
	case *kind.MinLength:
		if k.Want == 1 {
			return "must not be empty"
		}
		return fmt.Sprintf("length must be >= %d", k.Want)
	case *kind.MaxLength:
		return fmt.Sprintf("length must be <= %d", k.Want)
	case *kind.Minimum:
		return "must be >= " + k.Want.RatString()
	case *kind.Maximum:
		return "must be <= " + k.Want.RatString()
	case *kind.ExclusiveMinimum:
		return "must be > " + k.Want.RatString()
	case *kind.ExclusiveMaximum:
		return "must be < " + k.Want.RatString()
	case *kind.Format:
		if k.Want == "date-time" {
			return "must be an RFC 3339 date-time"
		}
		return "must be a valid " + k.Want
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			b, _ := json.Marshal(w)
			want[i] = string(b)
		}
		return "must be one of " + strings.Join(want, ", ")
	case *kind.ContentEncoding:
		return "must be " + k.Want + " encoded"
	}
	return ek.LocalizedString(printer)
}

func pointer(tokens []string) string {
	var sb strings.Builder
	for _, t := range tokens {
		sb.WriteByte('/')
		sb.WriteString(escape(t))
	}
	return sb.String()
}

// escape escapes one JSON pointer token (RFC 6901).
func escape(tok string) string {
	if !strings.ContainsAny(tok, "~/") {
		return tok
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(tok)
}
