package schemas

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestDecodeInputTable(t *testing.T) {
	id129 := strings.Repeat("a", 129)
	for _, tc := range []struct {
		name string
		raw  string
		// class is nil for a valid document, else ErrInvalidJSON or ErrSchema.
		class error
		// msg is the expected start of err.Error(): the pointer and the rule.
		msg string
		// decodeOnly: Validate accepts (the schema allows it) but DecodeInput
		// cannot represent the value in Go.
		decodeOnly bool
	}{
		{name: "valid minimal", raw: `{"id":"q-1","text":"hello"}`},
		{name: "valid full", raw: `{"id":"q-1","text":"hello","source":"web","created_at":"2026-01-02T15:04:05.5+01:00","metadata":{"a":[1,{"b":null}]}}`},
		{name: "id of 128 chars", raw: `{"id":"` + strings.Repeat("é", 128) + `","text":"x"}`},
		{name: "missing id", raw: `{"text":"hello"}`, class: ErrSchema, msg: "/id: is required"},
		{name: "empty id", raw: `{"id":"","text":"hello"}`, class: ErrSchema, msg: "/id: must not be empty"},
		{name: "id of 129 chars", raw: `{"id":"` + id129 + `","text":"hello"}`, class: ErrSchema, msg: "/id: length must be <= 128"},
		{name: "non-string id", raw: `{"id":7,"text":"hello"}`, class: ErrSchema, msg: "/id: must be string, got number"},
		{name: "missing text", raw: `{"id":"q-1"}`, class: ErrSchema, msg: "/text: is required"},
		{name: "empty text", raw: `{"id":"q-1","text":""}`, class: ErrSchema, msg: "/text: must not be empty"},
		{name: "null text", raw: `{"id":"q-1","text":null}`, class: ErrSchema, msg: "/text: must be string, got null"},
		{name: "non-string text", raw: `{"id":"q-1","text":42}`, class: ErrSchema, msg: "/text: must be string, got number"},
		{name: "object text", raw: `{"id":"q-1","text":{"en":"hi"}}`, class: ErrSchema, msg: "/text: must be string, got object"},
		{name: "bad created_at", raw: `{"id":"q-1","text":"hi","created_at":"yesterday"}`, class: ErrSchema, msg: "/created_at: must be an RFC 3339 date-time"},
		{name: "created_at without zone", raw: `{"id":"q-1","text":"hi","created_at":"2026-01-02T15:04:05"}`, class: ErrSchema, msg: "/created_at: must be an RFC 3339 date-time"},
		{name: "created_at month 13", raw: `{"id":"q-1","text":"hi","created_at":"2026-13-02T15:04:05Z"}`, class: ErrSchema, msg: "/created_at: must be an RFC 3339 date-time"},
		{name: "created_at leap second", raw: `{"id":"q-1","text":"hi","created_at":"2016-12-31T23:59:60Z"}`, class: ErrSchema, msg: "/created_at: date-time \"2016-12-31T23:59:60Z\" is valid RFC 3339 but not representable", decodeOnly: true},
		{name: "numeric created_at", raw: `{"id":"q-1","text":"hi","created_at":1767366245}`, class: ErrSchema, msg: "/created_at: must be string, got number"},
		{name: "metadata not object", raw: `{"id":"q-1","text":"hi","metadata":[1]}`, class: ErrSchema, msg: "/metadata: must be object, got array"},
		{name: "extra field", raw: `{"id":"q-1","text":"hi","lang":"en"}`, class: ErrSchema, msg: "/lang: unknown property"},
		{name: "differently cased field", raw: `{"id":"q-1","text":"hi","ID":"q-2"}`, class: ErrSchema, msg: "/ID: unknown property"},
		{name: "field with slash", raw: `{"id":"q-1","text":"hi","a/b~c":1}`, class: ErrSchema, msg: "/a~1b~0c: unknown property"},
		{name: "not an object: array", raw: `["q-1","hi"]`, class: ErrSchema, msg: "(root): must be object, got array"},
		{name: "not an object: string", raw: `"hello"`, class: ErrSchema, msg: "(root): must be object, got string"},
		{name: "not an object: null", raw: `null`, class: ErrSchema, msg: "(root): must be object, got null"},
		{name: "first violation in schema order", raw: `{"text":"","created_at":"x","zzz":1}`, class: ErrSchema, msg: "/id: is required (and 3 more)"},
		{name: "invalid JSON: truncated", raw: `{"id":"q-1","text":`, class: ErrInvalidJSON, msg: "invalid JSON: unexpected end of JSON input"},
		{name: "invalid JSON: syntax", raw: `{"id":"q-1" "text":"hi"}`, class: ErrInvalidJSON, msg: "invalid JSON: invalid character '\"' after object key:value pair (at byte 12)"},
		{name: "invalid JSON: empty", raw: ``, class: ErrInvalidJSON, msg: "invalid JSON: unexpected end of JSON input"},
		{name: "invalid JSON: trailing data", raw: `{"id":"q-1","text":"hi"} {}`, class: ErrInvalidJSON, msg: "invalid JSON: invalid character '{' after top-level value (at byte 25)"},
		{name: "invalid JSON: not UTF-8", raw: "{\"id\":\"q-1\",\"text\":\"bad \xff\"}", class: ErrInvalidJSON, msg: "invalid JSON: not valid UTF-8 (at byte 24)"},
		{name: "trailing whitespace is fine", raw: "{\"id\":\"q-1\",\"text\":\"hi\"}\r\n\t "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := DecodeInput([]byte(tc.raw))
			verr := MustValidator(KindInput).Validate([]byte(tc.raw))
			if tc.class == nil {
				if err != nil || verr != nil {
					t.Fatalf("DecodeInput: %v; Validate: %v; want both nil", err, verr)
				}
				if in.ID == "" || in.Text == "" {
					t.Errorf("decoded %+v", in)
				}
				return
			}
			errs := []error{err, verr}
			if tc.decodeOnly {
				if verr != nil {
					t.Errorf("Validate: %v, want nil", verr)
				}
				errs = errs[:1]
			}
			for _, e := range errs {
				if !errors.Is(e, tc.class) {
					t.Fatalf("error %v, want class %v", e, tc.class)
				}
				other := ErrSchema
				if tc.class == ErrSchema {
					other = ErrInvalidJSON
				}
				if errors.Is(e, other) {
					t.Errorf("error %v is also %v", e, other)
				}
				var ve *ValidationError
				if !errors.As(e, &ve) {
					t.Fatalf("error %T is not a *ValidationError", e)
				}
				if ve.Kind != KindInput {
					t.Errorf("Kind = %q", ve.Kind)
				}
				if !strings.HasPrefix(e.Error(), tc.msg) {
					t.Errorf("message %q, want prefix %q", e.Error(), tc.msg)
				}
				if tc.class == ErrSchema {
					ptr, _, _ := strings.Cut(tc.msg, ":")
					if ptr == "(root)" {
						ptr = ""
					}
					if ve.Pointer != ptr || len(ve.Violations) == 0 || ve.Violations[0].Pointer != ptr {
						t.Errorf("Pointer = %q, Violations = %v; want pointer %q first", ve.Pointer, ve.Violations, ptr)
					}
				}
			}
			if !reflect.DeepEqual(in, Input{}) {
				t.Errorf("DecodeInput returned %+v with its error", in)
			}
		})
	}
}

func TestValidationErrorDetails(t *testing.T) {
	err := MustValidator(KindInput).Validate([]byte(`{"id":"` + strings.Repeat("x", 200) + `","text":7,"zz":1}`))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("%v", err)
	}
	want := []Violation{
		{Pointer: "/id", Keyword: "maxLength", Message: "length must be <= 128"},
		{Pointer: "/text", Keyword: "type", Message: "must be string, got number"},
		{Pointer: "/zz", Keyword: "additionalProperties", Message: "unknown property"},
	}
	if !reflect.DeepEqual(ve.Violations, want) {
		t.Errorf("Violations = %#v\nwant %#v", ve.Violations, want)
	}
	if ve.Keyword != "maxLength" || err.Error() != "/id: length must be <= 128 (and 2 more)" {
		t.Errorf("Keyword %q, Error %q", ve.Keyword, err.Error())
	}
}

// TestDecodeInputMatchesUnmarshal: the single-parse DecodeInput gives what
// json.Unmarshal gives for every valid document.
func TestDecodeInputMatchesUnmarshal(t *testing.T) {
	for _, raw := range []string{
		`{"id":"q","text":"t"}`,
		`{"text":"t \u00e9\ud83d\ude00 \"quoted\"\n","id":"q"}`,
		`{"id":"q","text":"t","source":"","metadata":{}}`,
		`{"id":"q","text":"t","source":"app","created_at":"2026-01-02T15:04:05Z"}`,
		`{"id":"q","text":"t","created_at":"2026-01-02T15:04:05.123456789-07:30"}`,
		`{"id":"q","text":"t","metadata":{"n":1,"f":-2.5e3,"big":12345678901234567890,"nested":{"a":[1,"x",null,true,{"b":0.1}]}}}`,
		`{"id":"q","text":"dup","text":"last wins"}`,
	} {
		got, err := DecodeInput([]byte(raw))
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		var want Input
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\nDecodeInput    %#v\njson.Unmarshal %#v", raw, got, want)
		}
	}
	// RFC 3339 allows lower-case t and z; time.Parse does not, DecodeInput does.
	in, err := DecodeInput([]byte(`{"id":"q","text":"t","created_at":"2026-01-02t15:04:05z"}`))
	if err != nil || in.CreatedAt == nil || !in.CreatedAt.Equal(time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)) {
		t.Errorf("lower-case date-time: %v, %v", in.CreatedAt, err)
	}
	// A number too large for float64 is valid JSON Schema but not a Go value.
	_, err = DecodeInput([]byte(`{"id":"q","text":"t","metadata":{"x":[1e999]}}`))
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), ": number 1e999 is out of range") {
		t.Errorf("huge number: %v", err)
	}
}

func TestOtherKinds(t *testing.T) {
	pred := func(mod func(m map[string]any)) string {
		m := map[string]any{"id": "q", "input": map[string]any{"topic": "t", "partition": 0, "offset": 5},
			"label": "a", "confidence": 0.5, "scores": []any{map[string]any{"label": "a", "score": 0.5}},
			"model": map[string]any{"name": "m", "version": "1"}, "classified_at": "2026-01-02T15:04:05Z", "latency_ms": 0}
		mod(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	dl := `{"original":{"value_base64":"aGk=","headers":[{"key":"k","value_base64":""}]},"reason":{"code":"%s","message":"m"},"source":{"topic":"t","partition":1,"offset":2},"failed_at":"2026-01-02T15:04:05Z"}`
	for _, tc := range []struct {
		kind Kind
		raw  string
		msg  string // "" when valid
	}{
		{KindPrediction, pred(func(map[string]any) {}), ""},
		{KindPrediction, pred(func(m map[string]any) { m["confidence"] = 1.5 }), "/confidence: must be <= 1"},
		{KindPrediction, pred(func(m map[string]any) { m["latency_ms"] = -1 }), "/latency_ms: must be >= 0"},
		{KindPrediction, pred(func(m map[string]any) { m["input"].(map[string]any)["offset"] = -1 }), "/input/offset: must be >= 0"},
		{KindPrediction, pred(func(m map[string]any) { m["input"].(map[string]any)["partition"] = 1.5 }), "/input/partition: must be integer, got number"},
		{KindPrediction, pred(func(m map[string]any) { m["scores"] = []any{map[string]any{"label": "a"}} }), "/scores/0/score: is required"},
		{KindPrediction, pred(func(m map[string]any) { m["truncated"] = "yes" }), "/truncated: must be boolean, got string"},
		{KindPrediction, pred(func(m map[string]any) { delete(m, "model") }), "/model: is required"},
		{KindPrediction, pred(func(m map[string]any) { m["model"].(map[string]any)["sha"] = "x" }), "/model/sha: unknown property"},
		{KindDeadLetter, strings.Replace(dl, "%s", "schema_violation", 1), ""},
		{KindDeadLetter, strings.Replace(dl, "%s", "bored", 1), `/reason/code: must be one of "invalid_json", "schema_violation", `},
		{KindDeadLetter, strings.Replace(strings.Replace(dl, "%s", "model_error", 1), "aGk=", "not base64!", 1), "/original/value_base64: must be base64 encoded"},
		{KindFeedback, `{"id":"q","text":"t","label":"l","annotator":"a","created_at":"2026-01-02T15:04:05Z"}`, ""},
		{KindFeedback, `{"id":"q","text":"t"}`, "/label: is required"},
		{KindFeedback, `{"id":"q","text":"t","label":"l","score":1}`, "/score: unknown property"},
		{KindDeadLetter, strings.Replace(dl, "%s", "unknown_model", 1), ""},
		{KindFeedback, `{"id":"q","text":"t","label":"l","model":"support"}`, ""},
		{KindFeedback, `{"id":"q","text":"t","label":"l","model":""}`, "/model: must not be empty"},
		{KindFeedback, `{"id":"q","text":"t","label":"l","model":7}`, "/model: must be string, got number"},
		{KindFeedback, `{"id":"q","text":"t","label":"l","model":"` + strings.Repeat("m", 257) + `"}`, "/model: length must be <= 256"},
	} {
		err := MustValidator(tc.kind).Validate([]byte(tc.raw))
		switch {
		case tc.msg == "" && err != nil:
			t.Errorf("%s %s: %v", tc.kind, tc.raw, err)
		case tc.msg != "" && (!errors.Is(err, ErrSchema) || !strings.HasPrefix(err.Error(), tc.msg)):
			t.Errorf("%s %s: error %v, want %q", tc.kind, tc.raw, err, tc.msg)
		}
	}
}

func TestValidatorFor(t *testing.T) {
	for _, k := range Kinds() {
		a, err := ValidatorFor(k)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := ValidatorFor(k)
		if a != b || a.Kind() != k {
			t.Errorf("%s: validators not cached (%p, %p) or wrong kind %q", k, a, b, a.Kind())
		}
	}
	if _, err := ValidatorFor("review"); err == nil {
		t.Error("unknown kind accepted")
	}
	var f Feedback
	if err := Decode(KindFeedback, []byte(`{"id":"q","text":"t","label":"l"}`), &f); err != nil || f.Label != "l" {
		t.Errorf("Decode: %+v, %v", f, err)
	}
	// A record from before the model field decodes with no model (counted
	// for any model by snapshots); one with it carries it through.
	if err := Decode(KindFeedback, []byte(`{"id":"q","text":"t","label":"l","model":"support"}`), &f); err != nil || f.Model != "support" {
		t.Errorf("Decode with model: %+v, %v", f, err)
	}
	f = Feedback{}
	if err := Decode(KindFeedback, []byte(`{"id":"q","text":"t","label":"l"}`), &f); err != nil || f.Model != "" {
		t.Errorf("Decode without model: %+v, %v", f, err)
	}
	if err := Decode(KindFeedback, []byte(`{"id":"q","text":"t"}`), &f); !errors.Is(err, ErrSchema) {
		t.Errorf("Decode of invalid feedback: %v", err)
	}
}

// TestConcurrentValidation shares validators between goroutines (run with
// -race to check the caching).
func TestConcurrentValidation(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				raw := `{"id":"q","text":"t"}`
				if (g+i)%2 == 1 {
					raw = `{"id":"q"}`
				}
				_, err := DecodeInput([]byte(raw))
				if (err == nil) != ((g+i)%2 == 0) {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent decode: %v", err)
	}
}
