package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// decodeStrict decodes one JSON object into dst. Unknown fields, a wrong
// type, trailing data or malformed JSON give a 400 that names the field (or
// the byte offset) at fault.
func decodeStrict(body []byte, dst any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("", "request body is empty: send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("", "unexpected data after the JSON object")
	}
	return nil
}

// jsonError turns an encoding/json error into a 400 naming the field.
func jsonError(err error) *apiError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badRequest("", "malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.As(err, &te):
		if te.Field == "" {
			return badRequest("", "request body must be a JSON object, not %s", jsonKind(te.Value))
		}
		return badRequest(te.Field, "field %q: expected %s, got %s", te.Field, goTypeName(te.Type), jsonKind(te.Value))
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return badRequest("", "malformed JSON: unexpected end of input")
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		if s, err := strconv.Unquote(name); err == nil {
			name = s
		}
		return badRequest(name, "unknown field %q", name)
	}
	return badRequest("", "malformed JSON: %s", strings.TrimPrefix(msg, "json: "))
}

// jsonKind words the JSON value kind encoding/json reports ("number 3.5" -> "a number").
func jsonKind(v string) string {
	kind, _, _ := strings.Cut(v, " ")
	switch kind {
	case "array", "object", "number", "string", "bool":
		if kind == "bool" {
			kind = "boolean"
		}
		if kind == "array" || kind == "object" {
			return "an " + kind
		}
		return "a " + kind
	}
	return "a JSON " + kind
}

func goTypeName(t reflect.Type) string {
	if t == nil {
		return "a value"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return goTypeName(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(goTypeName(t.Elem()), "a "), "an ") + "s"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a " + t.Kind().String()
}

// limits bound what one request may ask for.
type limits struct {
	maxBatch     int // texts per request
	maxTextBytes int // bytes per text
}

// PredictRequest is the body of POST /v1/predict: one text or a batch.
type PredictRequest struct {
	Text  *string  `json:"text,omitempty" doc:"one text to classify (give text or texts)"`
	Texts []string `json:"texts,omitempty" doc:"a batch of texts to classify, at most max-batch"`
	Model string   `json:"model,omitempty" doc:"model name; optional when only one model is loaded"`
}

// predictInput is a validated PredictRequest.
type predictInput struct {
	texts  []string
	model  string
	single bool
}

// decodePredictRequest parses and validates a /v1/predict body.
func decodePredictRequest(body []byte, lim limits) (predictInput, *apiError) {
	var req PredictRequest
	if ae := decodeStrict(body, &req); ae != nil {
		return predictInput{}, ae
	}
	in := predictInput{model: req.Model}
	switch {
	case req.Text != nil && req.Texts != nil:
		return in, badRequest("texts", "give either text or texts, not both")
	case req.Text != nil:
		in.texts, in.single = []string{*req.Text}, true
	case req.Texts != nil:
		in.texts = req.Texts
	default:
		return in, badRequest("text", "text (a string) or texts (an array of strings) is required")
	}
	if len(in.texts) == 0 {
		return in, unprocessable("texts", "texts is empty: give at least one text")
	}
	if len(in.texts) > lim.maxBatch {
		return in, unprocessable("texts", "%d texts: at most %d per request", len(in.texts), lim.maxBatch)
	}
	for i, t := range in.texts {
		field := "text"
		if !in.single {
			field = fmt.Sprintf("texts[%d]", i)
		}
		if ae := checkText(field, t, lim.maxTextBytes); ae != nil {
			return in, ae
		}
	}
	return in, nil
}

// checkText rejects empty (or all-space) texts and texts over the hard limit.
func checkText(field, t string, maxBytes int) *apiError {
	if strings.TrimSpace(t) == "" {
		return unprocessable(field, "%s is empty", field)
	}
	if len(t) > maxBytes {
		return unprocessable(field, "%s is %d bytes; the limit is %d", field, len(t), maxBytes)
	}
	if !utf8.ValidString(t) { // cannot come out of encoding/json, kept for multipart callers
		return unprocessable(field, "%s is not valid UTF-8", field)
	}
	return nil
}
