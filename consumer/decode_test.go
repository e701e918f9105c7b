package consumer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/schemas"
)

// TestDecodeInputAgrees holds the fast path to schemas.DecodeInput: the
// same Input for every accepted record and the same error (hence the same
// dead-letter reason and detail) for every rejected one.
func TestDecodeInputAgrees(t *testing.T) {
	long := strings.Repeat("x", 128)
	docs := []string{
		`{"id":"1","text":"fine"}`,
		` { "id" : "q-1" , "text" : "My card has not arrived yet" , "source" : "web" } `,
		"{\n\t\"text\":\"a\",\r\n\"id\":\"b\"}",
		`{"id":"` + long + `","text":"x"}`,
		`{"id":"` + long + `x","text":"x"}`,
		`{"id":"` + strings.Repeat("é", 128) + `","text":"x"}`,
		`{"id":"` + strings.Repeat("é", 129) + `","text":"x"}`,
		`{"id":"日本","text":"語 🙂 <b>&amp;</b>"}`,
		`{"id":"1","text":"say \"hi\""}`,
		`{"id":"1","text":"a\u0041\n"}`,
		`{"id":"1","text":"bad \x"}`,
		`{"id":"1","text":"tab	inside"}`,
		`{"id":"","text":"x"}`,
		`{"id":"1","text":""}`,
		`{"id":"1","text":" "}`,
		`{"id":"1"}`,
		`{"text":"no id"}`,
		`{}`,
		`[]`,
		`"text"`,
		`null`,
		``,
		`{"id":1,"text":"x"}`,
		`{"id":"1","text":null}`,
		`{"id":"1","text":["x"]}`,
		`{"id":"1","text":"x","source":7}`,
		`{"id":"1","text":"x","source":""}`,
		`{"id":"1","text":"x","extra":"y"}`,
		`{"id":"1","text":"x","ID":"y"}`,
		`{"Id":"1","text":"x"}`,
		`{"id":"1","text":"x","id":"2"}`,
		`{"id":"1","text":"x","text":""}`,
		`{"id":"1","text":"x","created_at":"2026-01-02T15:04:05Z"}`,
		`{"id":"1","text":"x","created_at":"2026-01-02t15:04:05z"}`,
		`{"id":"1","text":"x","created_at":"yesterday"}`,
		`{"id":"1","text":"x","created_at":"2016-12-31T23:59:60Z"}`,
		`{"id":"1","text":"x","metadata":{"a":[1,2,{"b":null}]}}`,
		`{"id":"1","text":"x","metadata":"no"}`,
		`{"id":"1","text":"x"`,
		`{"id":"1","text":"x"}}`,
		`{"id":"1","text":"x"} {}`,
		`{"id":"1","text":"x",}`,
		`{"id":"1",,"text":"x"}`,
		`{"id":"1" "text":"x"}`,
		`{"id":"1":"text":"x"}`,
		`{id:"1","text":"x"}`,
		`{'id':'1','text':'x'}`,
		"\ufeff{\"id\":\"1\",\"text\":\"x\"}",
		"{\"id\":\"1\",\"text\":\"x\"}\x00",
		"{\"id\":\"1\",\"text\":\"x\u2028y\"}",
		"{\"id\":\"1\",\"text\":\"\xff\"}",
		`{"id":"1","text":"x","n":1e400}`,
	}
	// Mutations of valid records: truncations and one-byte changes.
	rng := rand.New(rand.NewPCG(7, 11))
	seeds := []string{docs[0], docs[1], docs[7], `{"id":"q-9","text":"Why was I charged \"twice\"?","source":"app"}`}
	for _, s := range seeds {
		for n := range len(s) + 1 {
			docs = append(docs, s[:n])
		}
		for range 300 {
			b := []byte(s)
			b[rng.IntN(len(b))] = `{}[]:," \\ax0-e`[rng.IntN(15)]
			docs = append(docs, string(b))
		}
	}
	fast := 0
	for _, d := range docs {
		want, wantErr := schemas.DecodeInput([]byte(d))
		got, gotErr := decodeInput([]byte(d))
		if _, ok := fastInput([]byte(d)); ok {
			fast++
		}
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || errors.Is(gotErr, schemas.ErrInvalidJSON) != errors.Is(wantErr, schemas.ErrInvalidJSON) {
			t.Errorf("%q: error %v, want %v", d, gotErr, wantErr)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%q: input %+v, want %+v", d, got, want)
		}
	}
	if fast < 100 {
		t.Errorf("fast path taken for only %d of %d documents", fast, len(docs))
	}

	// And through validate: the same reasons and details.
	c, err := New(Config{Brokers: []string{"x:1"}, Routes: map[string]Predictor{"in": Passthrough{}}, MaxTextBytes: 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		it := item{rec: &kgo.Record{Topic: "in", Value: []byte(d)}}
		c.validate(&it)
		ref := item{rec: it.rec}
		referenceValidate(c, &ref)
		if it.reason != ref.reason || it.detail != ref.detail || !reflect.DeepEqual(it.input, ref.input) {
			t.Errorf("%q: validate gave %q (%s), the validator %q (%s)", d, it.reason, it.detail, ref.reason, ref.detail)
		}
	}
}

// referenceValidate is validate as it was before the fast path.
func referenceValidate(c *Consumer, it *item) {
	if !utf8.Valid(it.rec.Value) {
		it.fail(schemas.ReasonInvalidUTF8, "record value is not valid UTF-8")
		return
	}
	in, err := schemas.DecodeInput(it.rec.Value)
	switch {
	case errors.Is(err, schemas.ErrInvalidJSON):
		it.fail(schemas.ReasonInvalidJSON, err.Error())
		return
	case err != nil:
		it.fail(schemas.ReasonSchemaViolation, err.Error())
		return
	}
	it.input = in
	switch {
	case strings.TrimSpace(in.Text) == "":
		it.fail(schemas.ReasonEmptyText, "text is empty or whitespace only")
	case len(in.Text) > c.cfg.MaxTextBytes:
		it.fail(schemas.ReasonTextTooLong, fmt.Sprintf("text is %d bytes, the limit is %d", len(in.Text), c.cfg.MaxTextBytes))
	}
}
