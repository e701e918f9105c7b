package gateway

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// The OpenAPI 3.1 document of every route. Schemas are generated from the
// Go types the handlers encode and decode (json tags; `doc` and `enum` tags
// add descriptions and enumerations; fields without omitempty are
// required), so they cannot drift from the code; the paths are listed here
// and a test checks them against the registered routes.

type obj = map[string]any

// schemaGen turns Go types into JSON Schemas, collecting named structs
// under components/schemas.
type schemaGen struct {
	components obj
}

// componentNames renames types whose Go name is not a good public name.
var componentNames = map[string]string{"apiError": "Error", "ErrorBody": "ErrorResponse"}

var timeType = reflect.TypeFor[time.Time]()

func (g *schemaGen) schema(t reflect.Type) obj {
	if t == timeType {
		return obj{"type": "string", "format": "date-time"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem())
	case reflect.String:
		return obj{"type": "string"}
	case reflect.Bool:
		return obj{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return obj{"type": "integer"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return obj{"type": "integer", "minimum": 0}
	case reflect.Float32, reflect.Float64:
		return obj{"type": "number"}
	case reflect.Slice, reflect.Array:
		return obj{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		if t.Elem().Kind() == reflect.Interface {
			return obj{"type": "object", "additionalProperties": true}
		}
		return obj{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Interface:
		return obj{}
	case reflect.Struct:
		name := t.Name()
		if n, ok := componentNames[name]; ok {
			name = n
		}
		if name == "" {
			return g.structSchema(t)
		}
		if _, ok := g.components[name]; !ok {
			g.components[name] = obj{} // placeholder: breaks recursion
			g.components[name] = g.structSchema(t)
		}
		return obj{"$ref": "#/components/schemas/" + name}
	}
	panic(fmt.Sprintf("openapi: no schema for %v", t))
}

func (g *schemaGen) structSchema(t reflect.Type) obj {
	props := obj{}
	var required []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		s := g.schema(f.Type)
		if doc := f.Tag.Get("doc"); doc != "" || f.Tag.Get("enum") != "" {
			if _, isRef := s["$ref"]; isRef { // siblings of $ref are allowed in 3.1, but keep it plain
				s = obj{"allOf": []any{s}}
			}
			if doc != "" {
				s["description"] = doc
			}
			if enum := f.Tag.Get("enum"); enum != "" {
				s["enum"] = strings.Split(enum, ",")
			}
		}
		props[name] = s
		if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") {
			required = append(required, name)
		}
	}
	out := obj{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		out["required"] = required
	}
	return out
}

func (g *schemaGen) ref(v any) obj { return g.schema(reflect.TypeOf(v)) }

func jsonContent(schema obj) obj {
	return obj{"application/json": obj{"schema": schema}}
}

// errorResponses are the shared error answers, by status.
var errorResponses = map[int]struct{ name, desc string }{
	400: {"BadRequest", "Malformed JSON, an unknown or mistyped field (named in error.field), or a missing field."},
	401: {"Unauthorized", "No API key, or one the gateway does not know."},
	403: {"Forbidden", "The API key lacks the scope this route needs."},
	404: {"NotFound", "No such model, job or route."},
	409: {"Conflict", "The registry refused the alias move: the version does not load, or there is nothing to roll back to."},
	413: {"PayloadTooLarge", "The request body or upload exceeds the configured limit."},
	415: {"UnsupportedMediaType", "A compressed request body (Content-Encoding); send it uncompressed."},
	422: {"Unprocessable", "Well-formed but invalid: empty or over-long text, too many texts, an empty label."},
	429: {"TooManyRequests", "The API key's rate limit is exhausted; retry after Retry-After seconds."},
	500: {"Internal", "An internal error; details are only in the server log."},
	503: {"Unavailable", "Not ready, feedback not configured, no trainer, training queue full, or a timeout."},
}

// operation describes one route for the document.
type operation struct {
	method, path, id, summary, desc, scope string
	tags                                   []string
	params                                 []obj
	body                                   obj // requestBody
	status                                 string
	response                               obj // the success response object
	errors                                 []int
}

func pathParam(name, desc string) obj {
	return obj{"name": name, "in": "path", "required": true, "description": desc, "schema": obj{"type": "string"}}
}

// operations lists every route the gateway registers (see Server.routes).
func operations(g *schemaGen) []operation {
	authErrs := []int{401, 403, 429, 500}
	withAuth := func(codes ...int) []int { return append(append([]int{}, codes...), authErrs...) }
	ok := func(desc string, schema obj) obj { return obj{"description": desc, "content": jsonContent(schema)} }
	return []operation{
		{method: "get", path: "/", id: "ui", summary: "Web UI", tags: []string{"meta"},
			desc:   "A self-contained page to classify texts in the browser (no external assets). The API key entered is kept in localStorage.",
			status: "200", response: obj{"description": "HTML page", "content": obj{"text/html": obj{"schema": obj{"type": "string"}}}}},
		{method: "get", path: "/healthz", id: "health", summary: "Liveness", tags: []string{"meta"},
			desc: "Always 200 while the process serves.", status: "200", response: ok("alive", g.ref(HealthResponse{}))},
		{method: "get", path: "/readyz", id: "ready", summary: "Readiness", tags: []string{"meta"},
			desc:   "200 when at least one model is loaded and (when configured) Kafka is ready; 503 lists the reasons in error.reasons.",
			status: "200", response: ok("ready", g.ref(ReadyResponse{})), errors: []int{503}},
		{method: "get", path: "/openapi.json", id: "openapi", summary: "This OpenAPI document", tags: []string{"meta"},
			status: "200", response: ok("OpenAPI 3.1 document", obj{"type": "object"})},
		{method: "get", path: "/metrics", id: "metrics", summary: "Prometheus metrics", tags: []string{"meta"}, scope: ScopeAdmin,
			desc:   "Prometheus text exposition: triage_gateway_requests_total{route,code}, triage_gateway_request_duration_seconds{route}, triage_gateway_batch_size{model}, triage_gateway_rate_limited_total{key}, and the process registry's other series.",
			status: "200", response: obj{"description": "metrics", "content": obj{"text/plain": obj{"schema": obj{"type": "string"}}}},
			errors: withAuth()},
		{method: "post", path: "/v1/predict", id: "predict", summary: "Classify texts", tags: []string{"predict"}, scope: ScopePredict,
			desc: "Classify one text (`text`) or a batch (`texts`, at most max-batch). `model` may be left out when exactly one model is loaded. " +
				"Concurrent requests for one model are coalesced into shared inference batches (dynamic batching).",
			body: obj{"required": true, "content": obj{"application/json": obj{"schema": g.ref(PredictRequest{}),
				"examples": obj{
					"single": obj{"value": obj{"text": "my card has not arrived yet", "model": "support"}},
					"batch":  obj{"value": obj{"texts": []string{"great film", "dull and far too long"}, "model": "reviews"}},
				}}}},
			status: "200", response: ok("one prediction per text, in order", g.ref(PredictResponse{})),
			errors: withAuth(400, 404, 413, 415, 422, 503)},
		{method: "get", path: "/v1/models", id: "listModels", summary: "Loaded models", tags: []string{"models"}, scope: ScopePredict,
			status: "200", response: ok("the serving set, by name", g.ref(ModelList{})), errors: withAuth()},
		{method: "get", path: "/v1/models/{name}", id: "getModel", summary: "One model", tags: []string{"models"}, scope: ScopePredict,
			desc:   "Version, labels, training provenance and validation metrics with per-class precision/recall/F1.",
			params: []obj{pathParam("name", "model name")},
			status: "200", response: ok("the model", g.ref(ModelInfo{})), errors: withAuth(404)},
		{method: "get", path: "/v1/models/{name}/params", id: "getModelParams", summary: "Hyper-parameters", tags: []string{"models"}, scope: ScopePredict,
			desc:   "The hyper-parameters the search chose, validation metrics, and every setting tried.",
			params: []obj{pathParam("name", "model name")},
			status: "200", response: ok("the model's parameters", g.ref(ModelParams{})), errors: withAuth(404)},
		{method: "post", path: "/v1/models/{name}/promote", id: "promoteModel", summary: "Promote a version", tags: []string{"models"}, scope: ScopeAdmin,
			desc: "Move the champion alias of the model to a registered version. The registry verifies that the version loads first; " +
				"every serving process (consumers and gateways) then swaps to it, between two batches. Recorded in the alias history.",
			params: []obj{pathParam("name", "model name")},
			body:   obj{"required": true, "content": jsonContent(g.ref(PromoteRequest{}))},
			status: "200", response: ok("the alias move", g.ref(AliasMove{})), errors: withAuth(400, 404, 409, 413, 415, 503)},
		{method: "post", path: "/v1/models/{name}/rollback", id: "rollbackModel", summary: "Roll back to the previous champion", tags: []string{"models"}, scope: ScopeAdmin,
			desc:   "Move the champion alias back to the version that served before the current one. Recorded in the alias history.",
			params: []obj{pathParam("name", "model name")},
			body:   obj{"required": false, "content": jsonContent(g.ref(RollbackRequest{}))},
			status: "200", response: ok("the alias move", g.ref(AliasMove{})), errors: withAuth(400, 404, 409, 413, 415, 503)},
		{method: "post", path: "/v1/train", id: "train", summary: "Queue a training job", tags: []string{"train"}, scope: ScopeTrain,
			desc: "Train a model on a file under the server's data root (JSON `data_path`) or on an uploaded CSV/TSV/JSONL file (multipart " +
				"`file`, size-limited). The trainer role runs the job (in this process, or in another one reached through Kafka): it " +
				"registers the trained bundle as a new version of `name` and, with `activate`, promotes it, so every serving process " +
				"swaps to it. 503 when no trainer is reachable or its queue is full. Poll the returned location.",
			body: obj{"required": true, "content": obj{
				"application/json": obj{"schema": g.ref(TrainRequest{})},
				"multipart/form-data": obj{"schema": obj{"type": "object", "required": []string{"file", "name"}, "properties": obj{
					"file":         obj{"type": "string", "contentMediaType": "application/octet-stream", "description": "training data: .csv, .tsv, .jsonl or .ndjson with a header row / keys"},
					"name":         obj{"type": "string"},
					"text_column":  obj{"type": "string"},
					"label_column": obj{"type": "string"},
					"activate":     obj{"type": "boolean"},
					"seed":         obj{"type": "integer", "minimum": 0},
					"max_epochs":   obj{"type": "integer", "minimum": 1, "maximum": 1000},
					"fine_tune":    obj{"type": "boolean"},
				}, "additionalProperties": false}},
			}},
			status: "202", response: obj{"description": "queued", "content": jsonContent(g.ref(TrainAccepted{})),
				"headers": obj{"Location": obj{"description": "the job's status URL", "schema": obj{"type": "string"}}}},
			errors: withAuth(400, 413, 415, 422, 503)},
		{method: "get", path: "/v1/train/{id}", id: "getTrainJob", summary: "Training job status", tags: []string{"train"}, scope: ScopeTrain,
			params: []obj{pathParam("id", "job id from POST /v1/train")},
			status: "200", response: ok("the job", g.ref(TrainJob{})), errors: withAuth(404, 503)},
		{method: "get", path: "/v1/review", id: "review", summary: "Uncertain predictions to label", tags: []string{"feedback"}, scope: ScopeFeedback,
			desc: "Predictions the consumers found uncertain (top-2 probability margin below --review-margin, sampled at --review-rate) " +
				"or abstained on (out of scope for the model, `abstained: true`; all of them, with --review-abstained), smallest margin first. Label one with POST /v1/feedback using its id; it then leaves the list. 503 without a review queue.",
			params: []obj{
				{"name": "model", "in": "query", "required": false, "description": "only this model's items", "schema": obj{"type": "string"}},
				{"name": "limit", "in": "query", "required": false, "description": "most items (1..200, default 20)", "schema": obj{"type": "integer", "minimum": 1, "maximum": 200}},
			},
			status: "200", response: ok("the items", g.ref(ReviewList{})), errors: withAuth(400, 503)},
		{method: "get", path: "/v1/drift", id: "drift", summary: "Drift monitoring windows per model and input topic", tags: []string{"monitoring"}, scope: ScopePredict,
			desc: "The monitor role's state: for each model and input topic, the reported windows (label PSI and Jensen-Shannon against the " +
				"validation split, calibrated confidence, accuracy estimated without labels (ATC) and, where human labels exist, the true accuracy, " +
				"input length and out-of-vocabulary rate, embedding shift), the alerts each raised, the window being filled, and how the " +
				"thresholds were set. 503 when no monitor runs in this process.",
			params: []obj{
				{"name": "model", "in": "query", "required": false, "description": "only this model", "schema": obj{"type": "string"}},
				{"name": "limit", "in": "query", "required": false, "description": "most recent windows per stream (1..1000, default 100)", "schema": obj{"type": "integer", "minimum": 1, "maximum": 1000}},
			},
			status: "200", response: ok("the monitor's state", g.ref(DriftReport{})), errors: withAuth(400, 503)},
		{method: "post", path: "/v1/feedback", id: "feedback", summary: "Submit a human label", tags: []string{"feedback"}, scope: ScopeFeedback,
			desc: "Validated (`model`, when given, must be loaded; a label it does not know yet is accepted: the next retraining adds the class) and handed to the feedback sink " +
				"(Kafka). 503 when this gateway has no feedback sink.",
			body:   obj{"required": true, "content": jsonContent(g.ref(FeedbackRequest{}))},
			status: "202", response: obj{"description": "accepted", "content": jsonContent(g.ref(Accepted{}))},
			errors: withAuth(400, 404, 413, 415, 422, 503)},
	}
}

// openAPIDocument builds the document.
func openAPIDocument() obj {
	g := &schemaGen{components: obj{}}
	errRef := g.ref(ErrorBody{})
	responses := obj{}
	for code, r := range errorResponses {
		resp := obj{"description": r.desc, "content": jsonContent(errRef)}
		switch code {
		case 401:
			resp["headers"] = obj{"WWW-Authenticate": obj{"description": "Bearer challenge", "schema": obj{"type": "string"}}}
		case 429, 503:
			resp["headers"] = obj{"Retry-After": obj{"description": "seconds to wait (when known)", "schema": obj{"type": "integer"}}}
		}
		responses[r.name] = resp
	}
	paths := obj{}
	for _, op := range operations(g) {
		o := obj{"operationId": op.id, "summary": op.summary, "tags": op.tags}
		desc := op.desc
		if op.scope != "" {
			o["x-required-scope"] = op.scope
			desc = strings.TrimSpace(desc + "\n\nRequires an API key with the `" + op.scope + "` scope (or `admin`).")
		} else {
			desc = strings.TrimSpace(desc + "\n\nOpen: no API key needed.")
		}
		o["description"] = desc
		if op.scope == "" {
			o["security"] = []any{} // open route
		}
		if op.params != nil {
			o["parameters"] = op.params
		}
		if op.body != nil {
			o["requestBody"] = op.body
		}
		resps := obj{op.status: op.response}
		for _, code := range op.errors {
			resps[fmt.Sprint(code)] = obj{"$ref": "#/components/responses/" + errorResponses[code].name}
		}
		o["responses"] = resps
		p, _ := paths[op.path].(obj)
		if p == nil {
			p = obj{}
			paths[op.path] = p
		}
		p[op.method] = o
	}
	return obj{
		"openapi": "3.1.0",
		"info": obj{
			"title":   "Triage gateway",
			"version": "1",
			"description": "Classify customer-support queries and reviews, inspect and train models, and submit human labels. " +
				"Authenticate with an API key (`triage apikey add`) as `Authorization: Bearer <key>` or `X-API-Key: <key>`. " +
				"Every error is `{\"error\":{\"code\",\"message\"}}`.",
		},
		"servers":  []any{obj{"url": "/"}},
		"security": []any{obj{"bearerAuth": []any{}}, obj{"apiKeyAuth": []any{}}},
		"tags": []any{
			obj{"name": "predict", "description": "classification"},
			obj{"name": "models", "description": "the serving set"},
			obj{"name": "train", "description": "training jobs"},
			obj{"name": "feedback", "description": "human labels"},
			obj{"name": "monitoring", "description": "drift statistics of the models on the stream"},
			obj{"name": "meta", "description": "health, readiness, metrics, this document, the UI"},
		},
		"paths": paths,
		"components": obj{
			"schemas":   g.components,
			"responses": responses,
			"securitySchemes": obj{
				"bearerAuth": obj{"type": "http", "scheme": "bearer", "bearerFormat": "trg_<43 base64url characters>",
					"description": "API key as a bearer token"},
				"apiKeyAuth": obj{"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "API key in a header"},
			},
		},
	}
}

// OpenAPIJSON returns the gateway's OpenAPI 3.1 document, as GET
// /openapi.json serves it (for the documentation site's REST reference).
func OpenAPIJSON() ([]byte, error) { return openAPIJSON() }

func openAPIJSON() ([]byte, error) {
	b, err := json.MarshalIndent(openAPIDocument(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("gateway openapi: %w", err)
	}
	return b, nil
}
