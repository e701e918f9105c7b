package schemas

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// goTypes maps each kind to the Go type that encodes it.
var goTypes = map[Kind]reflect.Type{
	KindInput:      reflect.TypeFor[Input](),
	KindPrediction: reflect.TypeFor[Prediction](),
	KindDeadLetter: reflect.TypeFor[DeadLetter](),
	KindFeedback:   reflect.TypeFor[Feedback](),
	KindDrift:      reflect.TypeFor[DriftWindow](),
}

func loadSchema(t *testing.T, k Kind) map[string]any {
	t.Helper()
	raw, ok := Files()[k.File()]
	if !ok {
		t.Fatalf("Files() has no %s", k.File())
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", k.File(), err)
	}
	return m
}

func TestSchemaFiles(t *testing.T) {
	fs := Files()
	var names []string
	for n := range fs {
		names = append(names, n)
	}
	sort.Strings(names)
	var want []string
	for _, k := range Kinds() {
		want = append(want, k.File())
	}
	sort.Strings(want)
	if !slices.Equal(names, want) {
		t.Errorf("Files() = %v, want %v", names, want)
	}
	for _, k := range Kinds() {
		s := loadSchema(t, k)
		if got, want := s["$id"], "https://triage.dev/schemas/"+Version+"/"+string(k)+".schema.json"; got != want || k.ID() != want {
			t.Errorf("%s: $id = %v, Kind.ID() = %s, want %s", k, got, k.ID(), want)
		}
		if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema = %v, want draft 2020-12", k, s["$schema"])
		}
		for _, f := range []string{"title", "description"} {
			if v, _ := s[f].(string); v == "" {
				t.Errorf("%s: no %s", k, f)
			}
		}
		if s["additionalProperties"] != false {
			t.Errorf("%s: top level must have additionalProperties: false", k)
		}
	}
	// Files hands out copies: scribbling on one must not change the next.
	fs[KindInput.File()][0] = 'X'
	if Files()[KindInput.File()][0] != '{' {
		t.Error("Files() shares its byte slices")
	}
}

// TestAgreement keeps the Go types and the schema files in step: the same
// property names at every level, required exactly when the Go field is not
// omitempty, matching JSON types, and closed objects for Go structs.
func TestAgreement(t *testing.T) {
	for _, k := range Kinds() {
		t.Run(string(k), func(t *testing.T) {
			var diffs []string
			compareType(&diffs, "", goTypes[k], loadSchema(t, k))
			if len(diffs) > 0 {
				t.Errorf("Go type %s and %s disagree:\n  %s", goTypes[k], k.File(), strings.Join(diffs, "\n  "))
			}
		})
	}
}

var (
	timeType   = reflect.TypeFor[time.Time]()
	base64Type = reflect.TypeFor[Base64]()
)

// compareType appends to diffs every disagreement between the Go type t and
// the schema s at the JSON pointer path.
func compareType(diffs *[]string, path string, t reflect.Type, s map[string]any) {
	at := path
	if at == "" {
		at = "(root)"
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	want := ""
	switch {
	case t == timeType:
		want = "string"
		if s["format"] != "date-time" {
			*diffs = append(*diffs, fmt.Sprintf("%s: Go time.Time but schema format is %v, want date-time", at, s["format"]))
		}
	case t == base64Type:
		want = "string"
		if s["contentEncoding"] != "base64" {
			*diffs = append(*diffs, fmt.Sprintf("%s: Go Base64 but schema contentEncoding is %v, want base64", at, s["contentEncoding"]))
		}
	case t.Kind() == reflect.String:
		want = "string"
	case t.Kind() == reflect.Bool:
		want = "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		want = "integer"
		if t.Kind() >= reflect.Uint || strings.HasSuffix(path, "/partition") || strings.HasSuffix(path, "/offset") {
			if m, ok := s["minimum"].(float64); !ok || m < 0 {
				*diffs = append(*diffs, fmt.Sprintf("%s: schema needs minimum >= 0, has %v", at, s["minimum"]))
			}
		}
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		want = "number"
	case t.Kind() == reflect.Slice:
		want = "array"
		items, ok := s["items"].(map[string]any)
		if !ok {
			*diffs = append(*diffs, fmt.Sprintf("%s: Go slice but schema has no items schema", at))
			break
		}
		compareType(diffs, path+"/*", t.Elem(), items)
	case t.Kind() == reflect.Map:
		want = "object"
	case t.Kind() == reflect.Struct:
		want = "object"
		compareStruct(diffs, path, t, s)
	default:
		*diffs = append(*diffs, fmt.Sprintf("%s: Go type %s has no JSON Schema mapping in this test", at, t))
	}
	if got := s["type"]; got != want {
		*diffs = append(*diffs, fmt.Sprintf("%s: Go %s wants type %q, schema has %v", at, t, want, got))
	}
}

func compareStruct(diffs *[]string, path string, t reflect.Type, s map[string]any) {
	at := path
	if at == "" {
		at = "(root)"
	}
	props, _ := s["properties"].(map[string]any)
	if s["additionalProperties"] != false {
		*diffs = append(*diffs, fmt.Sprintf("%s: Go struct %s but schema object is open (additionalProperties is not false)", at, t))
	}
	required := map[string]bool{}
	if rs, ok := s["required"].([]any); ok {
		for _, r := range rs {
			required[r.(string)] = true
		}
	}
	seen := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if name == "" {
			*diffs = append(*diffs, fmt.Sprintf("%s: Go field %s.%s has no json name", at, t.Name(), f.Name))
			continue
		}
		seen[name] = true
		fp := path + "/" + name
		ps, ok := props[name].(map[string]any)
		if !ok {
			*diffs = append(*diffs, fmt.Sprintf("%s: Go field %s.%s is not a schema property", fp, t.Name(), f.Name))
			continue
		}
		omitempty := slices.Contains(strings.Split(opts, ","), "omitempty")
		switch {
		case omitempty && required[name]:
			*diffs = append(*diffs, fmt.Sprintf("%s: required in schema but omitempty in Go (%s.%s)", fp, t.Name(), f.Name))
		case !omitempty && !required[name]:
			*diffs = append(*diffs, fmt.Sprintf("%s: always written by Go (%s.%s) but optional in schema", fp, t.Name(), f.Name))
		}
		compareType(diffs, fp, f.Type, ps)
	}
	var extra []string
	for name := range props {
		if !seen[name] {
			extra = append(extra, name)
		}
	}
	for name := range required {
		if props[name] == nil {
			extra = append(extra, name+" (required but not declared)")
		}
	}
	sort.Strings(extra)
	for _, name := range extra {
		*diffs = append(*diffs, fmt.Sprintf("%s/%s: schema property has no Go field in %s", path, name, t))
	}
}

// TestAgreementDetectsDrift checks the checker: a Go type that drifted from
// its schema must be reported, field by field.
func TestAgreementDetectsDrift(t *testing.T) {
	type drifted struct {
		ID     string     `json:"id"`
		Text   int        `json:"text"`               // wrong type
		Source string     `json:"source"`             // required in Go, optional in schema
		When   *time.Time `json:"when,omitempty"`     // not in schema
		Extra  struct{}   `json:"metadata,omitempty"` // struct, but schema object is open
	}
	var diffs []string
	compareType(&diffs, "", reflect.TypeFor[drifted](), loadSchema(t, KindInput))
	got := strings.Join(diffs, "\n")
	for _, want := range []string{
		`/text: Go int wants type "integer", schema has string`,
		`/source: always written by Go`,
		`/when: Go field drifted.When is not a schema property`,
		`/metadata: Go struct struct {} but schema object is open`,
		`/created_at: schema property has no Go field`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("drift report lacks %q; got:\n%s", want, got)
		}
	}
}

// populated returns a value of each Go type with every field set.
func populated() map[Kind]any {
	ts := time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC)
	created := time.Date(2026, 1, 2, 14, 0, 0, 0, time.FixedZone("", 3600))
	return map[Kind]any{
		KindInput: Input{ID: "q-1", Text: "My card has not arrived", Source: "web", CreatedAt: &created,
			Metadata: map[string]any{"locale": "en-GB", "attempt": 2.0, "tags": []any{"card", true, nil}}},
		KindPrediction: Prediction{ID: "q-1", Input: InputRef{Topic: "triage.support-queries", Partition: 3, Offset: 1 << 40},
			Label: "card_arrival", Confidence: 0.93,
			Scores: []Score{{Label: "card_arrival", Score: 0.93}, {Label: "card_delivery_estimate", Score: 0.05}},
			Model:  ModelRef{Name: "support", Version: "20261124T164011Z"}, ClassifiedAt: ts, LatencyMS: 12.5, Truncated: true, Abstained: true,
			Signals: &Signals{Calibrated: 0.9, Margin: 0.88, Tokens: 6, OOVRate: 0.05, EmbedDist: ptr(0.31)}},
		KindDeadLetter: DeadLetter{
			Original: Original{Value: []byte("{\"id\":\xff"), Key: []byte("q-2"),
				Headers: []Header{{Key: "trace", Value: []byte{0, 1, 2}}, {Key: "empty", Value: nil}}},
			Reason:   Reason{Code: ReasonInvalidUTF8, Message: "record value is not valid UTF-8"},
			Source:   Source{Topic: "triage.reviews", Partition: 0, Offset: 17},
			FailedAt: ts},
		KindFeedback: Feedback{ID: "q-1", Text: "My card has not arrived", Label: "card_arrival", Model: "support", Annotator: "alice", Eval: true, CreatedAt: &created},
		KindDrift: DriftWindow{Timestamp: ts, Model: ModelRef{Name: "support", Version: "v3"}, Topic: "triage.support-queries",
			Window:   WindowRef{Start: created, End: ts, Count: 500, Kind: "count"},
			LabelPSI: 0.31, LabelJS: 0.07, LabelShares: []LabelShare{{Label: "card_arrival", Share: 0.2, Reference: 0.013}},
			Confidence:        ConfidenceStat{Mean: 0.7, P10: 0.3, P50: 0.8, P90: 0.97, LowShare: 0.25, MarginMean: 0.5},
			EstimatedAccuracy: 0.71, EstimatedAccuracyCBPE: 0.7, TrueAccuracy: ptr(0.69), Labelled: 40,
			Input: InputStat{TokensMean: 12.5, OOVRate: 0.12}, Embedding: &EmbeddingStat{CentroidDistance: 0.4},
			DomainAUC: ptr(0.93), Drift: true, Alerts: []string{"label_psi"},
			Thresholds: []Threshold{{Statistic: "label_psi", Direction: "above", Value: 0.12}}},
	}
}

func ptr[T any](v T) *T { return &v }

// TestPopulatedValuesValidate marshals a fully populated value of each type,
// checks it against its schema, and reads it back.
func TestPopulatedValuesValidate(t *testing.T) {
	for k, v := range populated() {
		t.Run(string(k), func(t *testing.T) {
			if reflect.TypeOf(v) != goTypes[k] {
				t.Fatalf("populated value is %T, want %s", v, goTypes[k])
			}
			// Every field must really be set, or the check proves less.
			if zero := zeroFields(reflect.ValueOf(v), ""); len(zero) > 0 {
				t.Fatalf("populated %s leaves fields unset: %v", k, zero)
			}
			raw, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if err := MustValidator(k).Validate(raw); err != nil {
				t.Fatalf("marshalled %s fails its schema: %v\n%s", k, err, raw)
			}
			back := reflect.New(goTypes[k])
			if err := Decode(k, raw, back.Interface()); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			raw2, _ := json.Marshal(back.Elem().Interface())
			if string(raw2) != string(raw) {
				t.Errorf("round trip changed the document:\n%s\n%s", raw, raw2)
			}
		})
	}
}

func zeroFields(v reflect.Value, path string) []string {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return []string{path}
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct || v.Type() == timeType {
		if v.IsZero() && !strings.HasSuffix(path, ".Partition") { // partition 0 is the common case
			return []string{path}
		}
		return nil
	}
	var out []string
	for i := range v.NumField() {
		out = append(out, zeroFields(v.Field(i), path+"."+v.Type().Field(i).Name)...)
	}
	return out
}

// TestMinimalValuesValidate: values with only the required fields set (and
// nil byte slices) still satisfy the schemas.
func TestMinimalValuesValidate(t *testing.T) {
	ts := time.Unix(0, 0).UTC()
	for k, v := range map[Kind]any{
		KindInput: Input{ID: "x", Text: "y"},
		KindPrediction: Prediction{ID: "x", Input: InputRef{Topic: "t"}, Label: "l", Scores: []Score{},
			Model: ModelRef{Name: "m", Version: "1"}, ClassifiedAt: ts},
		KindDeadLetter: DeadLetter{Original: Original{Headers: []Header{}}, Reason: Reason{Code: ReasonModelError},
			Source: Source{Topic: "t"}, FailedAt: ts},
		KindFeedback: Feedback{ID: "x", Text: "y", Label: "l"},
	} {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := MustValidator(k).Validate(raw); err != nil {
			t.Errorf("%s: %v\n%s", k, err, raw)
		}
	}
}

func TestReasonCodesMatchSchema(t *testing.T) {
	s := loadSchema(t, KindDeadLetter)
	enum := s["properties"].(map[string]any)["reason"].(map[string]any)["properties"].(map[string]any)["code"].(map[string]any)["enum"].([]any)
	var got []string
	for _, e := range enum {
		got = append(got, e.(string))
	}
	if !slices.Equal(got, ReasonCodes()) {
		t.Errorf("schema reason codes %v, Go ReasonCodes() %v", got, ReasonCodes())
	}
}
