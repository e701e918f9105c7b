package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

var fiberParam = regexp.MustCompile(`:(\w+)`)

func openAPIDoc(t *testing.T, ts *testServer) map[string]any {
	t.Helper()
	code, h, b := ts.call(t, "GET", "/openapi.json", "", nil)
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("openapi.json: %d %s", code, h.Get("Content-Type"))
	}
	return decodeJSON[map[string]any](t, b)
}

// TestOpenAPIMatchesRoutes: every registered route is documented, and
// every documented operation is registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, nil)
	doc := openAPIDoc(t, ts)
	if doc["openapi"] != "3.1.0" {
		t.Errorf("openapi version %v", doc["openapi"])
	}
	paths := doc["paths"].(map[string]any)

	registered := map[string]bool{}
	gets := map[string]bool{}
	var heads []string
	for _, r := range ts.App().GetRoutes(true) {
		p := fiberParam.ReplaceAllString(r.Path, "{$1}")
		if r.Method == "HEAD" { // fiber adds HEAD to every GET route
			heads = append(heads, p)
			continue
		}
		if r.Method == "GET" {
			gets[p] = true
		}
		op := strings.ToLower(r.Method) + " " + p
		registered[op] = true
		item, _ := paths[p].(map[string]any)
		if _, ok := item[strings.ToLower(r.Method)]; !ok {
			t.Errorf("route %s %s is not in /openapi.json", r.Method, r.Path)
		}
	}
	for _, p := range heads {
		if !gets[p] {
			t.Errorf("HEAD %s without GET: document it", p)
		}
	}
	if len(registered) < 12 {
		t.Errorf("only %d routes registered: %v", len(registered), registered)
	}
	for p, item := range paths {
		for method := range item.(map[string]any) {
			if !registered[method+" "+p] {
				t.Errorf("/openapi.json documents %s %s, which is not registered", strings.ToUpper(method), p)
			}
		}
	}

	// Security: bearer and X-API-Key, required except on the open routes.
	schemes := doc["components"].(map[string]any)["securitySchemes"].(map[string]any)
	if b := schemes["bearerAuth"].(map[string]any); b["type"] != "http" || b["scheme"] != "bearer" {
		t.Errorf("bearerAuth: %v", b)
	}
	if k := schemes["apiKeyAuth"].(map[string]any); k["type"] != "apiKey" || k["in"] != "header" || k["name"] != "X-API-Key" {
		t.Errorf("apiKeyAuth: %v", k)
	}
	open := []string{"/", "/healthz", "/readyz", "/openapi.json"}
	statuses := map[string]bool{}
	for p, item := range paths {
		for method, raw := range item.(map[string]any) {
			op := raw.(map[string]any)
			sec, hasSec := op["security"]
			isOpen := slices.Contains(open, p)
			if isOpen != (hasSec && len(sec.([]any)) == 0) {
				t.Errorf("%s %s: security %v (open route: %v)", method, p, sec, isOpen)
			}
			resps := op["responses"].(map[string]any)
			for code := range resps {
				statuses[code] = true
			}
			if !isOpen {
				for _, code := range []string{"401", "403", "429"} {
					if _, ok := resps[code]; !ok {
						t.Errorf("%s %s: no %s response", method, p, code)
					}
				}
			}
		}
	}
	for _, code := range []string{"200", "202", "400", "401", "403", "404", "413", "422", "429", "500", "503"} {
		if !statuses[code] {
			t.Errorf("no operation documents status %s", code)
		}
	}
	// Every $ref resolves.
	checkRefs(t, doc, doc)
}

func checkRefs(t *testing.T, doc, v any) {
	switch v := v.(type) {
	case map[string]any:
		if ref, ok := v["$ref"].(string); ok {
			if resolve(doc, ref) == nil {
				t.Errorf("dangling $ref %s", ref)
			}
		}
		for _, x := range v {
			checkRefs(t, doc, x)
		}
	case []any:
		for _, x := range v {
			checkRefs(t, doc, x)
		}
	}
}

func resolve(doc any, ref string) map[string]any {
	cur := doc
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	m, _ := cur.(map[string]any)
	return m
}

// conform checks a decoded JSON value against a JSON Schema subset (type,
// properties, required, additionalProperties, items, allOf, enum, $ref).
func conform(doc map[string]any, schema map[string]any, v any, at string) []string {
	if ref, ok := schema["$ref"].(string); ok {
		return conform(doc, resolve(doc, ref), v, at)
	}
	var errs []string
	for _, sub := range asList(schema["allOf"]) {
		errs = append(errs, conform(doc, sub.(map[string]any), v, at)...)
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, v) {
		errs = append(errs, fmt.Sprintf("%s: %v not in %v", at, v, enum))
	}
	typ, _ := schema["type"].(string)
	switch typ {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want object, got %T", at, v))
		}
		props, _ := schema["properties"].(map[string]any)
		for _, r := range asList(schema["required"]) {
			if _, ok := obj[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required %q missing", at, r))
			}
		}
		for k, x := range obj {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, conform(doc, ps, x, at+"."+k)...)
				continue
			}
			switch ap := schema["additionalProperties"].(type) {
			case bool:
				if !ap {
					errs = append(errs, fmt.Sprintf("%s: undocumented property %q", at, k))
				}
			case map[string]any:
				errs = append(errs, conform(doc, ap, x, at+"."+k)...)
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want array, got %T", at, v))
		}
		for i, x := range arr {
			errs = append(errs, conform(doc, schema["items"].(map[string]any), x, fmt.Sprintf("%s[%d]", at, i))...)
		}
	case "string":
		if _, ok := v.(string); !ok {
			errs = append(errs, fmt.Sprintf("%s: want string, got %T", at, v))
		}
	case "number", "integer":
		f, ok := v.(float64)
		if !ok || (typ == "integer" && f != float64(int64(f))) {
			errs = append(errs, fmt.Sprintf("%s: want %s, got %v", at, typ, v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			errs = append(errs, fmt.Sprintf("%s: want boolean, got %T", at, v))
		}
	}
	return errs
}

func asList(v any) []any { l, _ := v.([]any); return l }

// TestResponsesMatchOpenAPI: real responses conform to the documented
// response schemas (a drift check beyond the route list).
func TestResponsesMatchOpenAPI(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, func(c *Config) {
		c.Feedback = func(context.Context, FeedbackRecord) error { return nil }
		withJobs(t, c)
		c.DataRoot = t.TempDir()
	})
	doc := openAPIDoc(t, ts)
	syntheticCSV(t, ts.cfg.DataRoot, "d.csv", 1)
	paths := doc["paths"].(map[string]any)
	// The checker itself catches drift.
	bad := map[string]any{"predictions": 1.0, "extra": true}
	if errs := conform(doc, map[string]any{"$ref": "#/components/schemas/PredictResponse"}, bad, "body"); len(errs) != 3 {
		t.Errorf("conform found %v; want wrong type, missing latency_ms, undocumented extra", errs)
	}
	type call struct {
		method, path, docPath, key, body string
	}
	var trainID string
	calls := []call{
		{"GET", "/healthz", "/healthz", "", ""},
		{"GET", "/readyz", "/readyz", "", ""},
		{"POST", "/v1/predict", "/v1/predict", "predictor", `{"texts":["a refund","parcel"]}`},
		{"POST", "/v1/predict", "/v1/predict", "predictor", `{"texts":[""]}`},
		{"POST", "/v1/predict", "/v1/predict", "predictor", `{"bad":1}`},
		{"POST", "/v1/predict", "/v1/predict", "", `{"text":"x"}`},
		{"GET", "/v1/models", "/v1/models", "predictor", ""},
		{"GET", "/v1/models/support", "/v1/models/{name}", "predictor", ""},
		{"GET", "/v1/models/nope", "/v1/models/{name}", "predictor", ""},
		{"GET", "/v1/models/support/params", "/v1/models/{name}/params", "predictor", ""},
		{"POST", "/v1/feedback", "/v1/feedback", "feeder", `{"id":"1","text":"t","label":"billing","model":"support"}`},
		{"POST", "/v1/feedback", "/v1/feedback", "predictor", `{"id":"1","text":"t","label":"billing"}`},
		{"POST", "/v1/train", "/v1/train", "trainer", `{"data_path":"d.csv","name":"d","max_epochs":2}`},
		{"GET", "/v1/train/{id}", "/v1/train/{id}", "trainer", ""},
	}
	for _, c := range calls {
		path := c.path
		if strings.Contains(path, "{id}") {
			ts.waitJob(t, trainID)
			path = "/v1/train/" + trainID
		}
		code, _, b := ts.call(t, c.method, path, c.key, c.body)
		op := paths[c.docPath].(map[string]any)[strings.ToLower(c.method)].(map[string]any)
		resp, ok := op["responses"].(map[string]any)[fmt.Sprint(code)].(map[string]any)
		if !ok {
			t.Errorf("%s %s answered %d, which is not documented", c.method, path, code)
			continue
		}
		if ref, ok := resp["$ref"].(string); ok {
			resp = resolve(doc, ref)
		}
		schema := resp["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s %s: %v", c.method, path, err)
		}
		errs := conform(doc, schema, v, "body")
		sort.Strings(errs)
		for _, e := range errs {
			t.Errorf("%s %s (%d): %s", c.method, path, code, e)
		}
		if c.method == "POST" && c.path == "/v1/train" {
			trainID = decodeJSON[TrainAccepted](t, b).ID
		}
	}
}
