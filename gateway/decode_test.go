package gateway

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecodePredictRequest: decoding never panics, and its result is
// either a 400/413/422 error with a message or texts that satisfy every
// limit.
func FuzzDecodePredictRequest(f *testing.F) {
	for _, s := range []string{
		`{"text":"hello"}`, `{"texts":["a","b"],"model":"support"}`, `{"text":""}`, `{"texts":[]}`,
		`{"text":5}`, `{"txt":"x"}`, `{"text":"a","texts":["b"]}`, `[]`, `null`, `{"text":"x"} {}`,
		`{"texts":[null]}`, `{"text":null}`, "{\"text\":\"\xff\xfe\"}", `{"text":"\u0000"}`, `{"model":{}}`, ``, `{`, `"`,
		`{"texts":["` + strings.Repeat("x", 70) + `"]}`, `{"TEXT":"case"}`,
	} {
		f.Add([]byte(s))
	}
	lim := limits{maxBatch: 4, maxTextBytes: 64}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, ae := decodePredictRequest(body, lim)
		if ae != nil {
			if ae.Status != http.StatusBadRequest && ae.Status != http.StatusUnprocessableEntity && ae.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d for %q", ae.Status, body)
			}
			if ae.Code == "" || ae.Message == "" {
				t.Fatalf("empty error for %q: %+v", body, ae)
			}
			if _, err := json.Marshal(ErrorBody{Error: ae}); err != nil {
				t.Fatalf("error does not encode: %v", err)
			}
			return
		}
		if len(in.texts) == 0 || len(in.texts) > lim.maxBatch {
			t.Fatalf("%d texts accepted from %q", len(in.texts), body)
		}
		if in.single != (len(in.texts) == 1 && !strings.Contains(string(body), "texts")) && in.single {
			t.Fatalf("single with %d texts", len(in.texts))
		}
		for _, s := range in.texts {
			if strings.TrimSpace(s) == "" || len(s) > lim.maxTextBytes || !utf8.ValidString(s) {
				t.Fatalf("text %q accepted from %q", s, body)
			}
		}
		if !json.Valid(body) {
			t.Fatalf("invalid JSON accepted: %q", body)
		}
	})
}
