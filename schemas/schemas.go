// Package schemas holds the versioned JSON Schemas (draft 2020-12) of the
// records Triage reads and writes on Kafka, the Go types that encode them,
// and validation against them.
//
// The schema files are embedded from v1/ and served as they are (Files);
// the Go types are kept in agreement with them by this package's tests.
// Validators are compiled once per kind and are safe for concurrent use.
package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Version is the schema version these types and files belong to.
const Version = "v1"

//go:embed v1/*.schema.json
var files embed.FS

// Kind names one record schema.
type Kind string

// The record kinds.
const (
	KindInput      Kind = "input"
	KindPrediction Kind = "prediction"
	KindDeadLetter Kind = "dead-letter"
	KindFeedback   Kind = "feedback"
	KindDrift      Kind = "drift"
)

// Kinds lists every kind.
func Kinds() []Kind {
	return []Kind{KindInput, KindPrediction, KindDeadLetter, KindFeedback, KindDrift}
}

// BaseURL prefixes every schema's $id; a schema's $id is BaseURL + its
// Files name.
const BaseURL = "https://triage.dev/schemas/"

// File is the kind's schema file name in Files, e.g. "v1/input.schema.json".
func (k Kind) File() string { return Version + "/" + string(k) + ".schema.json" }

// ID is the kind's schema $id, e.g.
// "https://triage.dev/schemas/v1/input.schema.json".
func (k Kind) ID() string { return BaseURL + k.File() }

func (k Kind) valid() bool {
	switch k {
	case KindInput, KindPrediction, KindDeadLetter, KindFeedback, KindDrift:
		return true
	}
	return false
}

// Files returns every schema file, by name relative to this package's
// directory (e.g. "v1/input.schema.json"), as fresh copies.
func Files() map[string][]byte {
	out := map[string][]byte{}
	err := fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(path)
		out[path] = b
		return err
	})
	if err != nil { // the embedded FS cannot fail to read
		panic(err)
	}
	return out
}

// Validator validates raw JSON documents against one kind's schema.
// It is safe for concurrent use.
type Validator struct {
	kind   Kind
	schema *jsonschema.Schema
	order  *order
}

// Kind is the kind this validator checks.
func (v *Validator) Kind() Kind { return v.kind }

var (
	compileOnce sync.Once
	compiled    map[Kind]*Validator
	compileErr  error
)

// ValidatorFor returns the validator of kind. All schemas are compiled on
// the first call and cached; later calls are a map lookup.
func ValidatorFor(kind Kind) (*Validator, error) {
	compileOnce.Do(func() { compiled, compileErr = compileAll() })
	if compileErr != nil {
		return nil, compileErr
	}
	v, ok := compiled[kind]
	if !ok {
		return nil, fmt.Errorf("schemas: unknown kind %q", kind)
	}
	return v, nil
}

// MustValidator is ValidatorFor for kinds known at compile time; it panics
// on an unknown kind.
func MustValidator(kind Kind) *Validator {
	v, err := ValidatorFor(kind)
	if err != nil {
		panic(err)
	}
	return v
}

// noLoader keeps the compiler from fetching anything: every schema it may
// need is added as a resource, and the draft 2020-12 metaschema is built in.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schemas: refusing to load %s: not embedded", url)
}

func compileAll() (map[Kind]*Validator, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()  // "format": "date-time" is checked, not just annotated
	c.AssertContent() // "contentEncoding": "base64" likewise
	c.UseLoader(noLoader{})
	orders := map[Kind]*order{}
	for _, k := range Kinds() {
		raw, err := files.ReadFile(k.File())
		if err != nil {
			return nil, fmt.Errorf("schemas: %w", err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("schemas: parse %s: %w", k.File(), err)
		}
		ord, err := schemaOrder(raw)
		if err != nil {
			return nil, fmt.Errorf("schemas: parse %s: %w", k.File(), err)
		}
		orders[k] = ord
		if err := c.AddResource(k.ID(), doc); err != nil {
			return nil, fmt.Errorf("schemas: add %s: %w", k.File(), err)
		}
	}
	out := make(map[Kind]*Validator, len(Kinds()))
	for _, k := range Kinds() {
		s, err := c.Compile(k.ID())
		if err != nil {
			return nil, fmt.Errorf("schemas: compile %s: %w", k.File(), err)
		}
		out[k] = &Validator{kind: k, schema: s, order: orders[k]}
	}
	return out, nil
}

// Validate checks that raw is one JSON value that satisfies the schema.
// A failure is a *ValidationError that wraps ErrInvalidJSON (raw is not
// JSON, or not UTF-8) or ErrSchema (it is JSON but violates the schema).
func (v *Validator) Validate(raw []byte) error {
	doc, err := parseJSON(raw)
	if err != nil {
		return parseError(v.kind, err)
	}
	return v.validateDoc(doc)
}

// ValidateValue checks an already decoded JSON value, as produced by
// encoding/json into an any (float64 or json.Number numbers). Failures are
// *ValidationError wrapping ErrSchema.
func (v *Validator) ValidateValue(doc any) error { return v.validateDoc(doc) }

func (v *Validator) validateDoc(doc any) error {
	err := v.schema.Validate(doc)
	if err == nil {
		return nil
	}
	if ve, ok := err.(*jsonschema.ValidationError); ok {
		return schemaError(v.kind, v.order, ve)
	}
	// The library returns other errors only for values that are not JSON
	// (e.g. an unsupported Go type), which parseJSON never produces.
	return &ValidationError{Kind: v.kind, Err: ErrSchema, Message: err.Error()}
}

// parseJSON decodes exactly one JSON value in UTF-8, as json.Unmarshal
// into an any does (numbers as float64: exact for the integers Kafka
// offsets reach in practice, below 2^53). It is faster and allocates less
// than a json.Decoder with UseNumber.
func parseJSON(raw []byte) (any, error) {
	if err := checkUTF8(raw); err != nil {
		return nil, err
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	return doc, nil
}
