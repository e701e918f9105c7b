package elastic

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTemplatesShape(t *testing.T) {
	ts := Templates()
	if got := templateNames(ts); !slices.Equal(got, []string{"triage-drift", "triage-logs", "triage-predictions"}) {
		t.Fatalf("templates %v", got)
	}
	for _, kind := range kinds {
		name := "triage-" + kind
		var tpl struct {
			IndexPatterns []string `json:"index_patterns"`
			Priority      int      `json:"priority"`
			Template      struct {
				Settings struct {
					Shards   json.Number `json:"number_of_shards"`
					Replicas json.Number `json:"number_of_replicas"`
				} `json:"settings"`
			} `json:"template"`
		}
		if err := json.Unmarshal(ts[name], &tpl); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(tpl.IndexPatterns, []string{name + "-*"}) || tpl.Priority <= 0 ||
			tpl.Template.Settings.Shards != "1" || tpl.Template.Settings.Replicas != "0" {
			t.Errorf("%s: %+v", name, tpl)
		}
		pats, err := IndexPatterns(ts[name])
		if err != nil || !slices.Equal(pats, tpl.IndexPatterns) {
			t.Errorf("IndexPatterns(%s) = %v, %v", name, pats, err)
		}
	}
	// Each call returns a new map: a caller's change reaches no one else.
	delete(ts, "triage-drift")
	if _, ok := Templates()["triage-drift"]; !ok {
		t.Fatal("Templates shares its map")
	}
}

func TestMappedFields(t *testing.T) {
	f, err := MappedFields(Templates()["triage-logs"])
	if err != nil {
		t.Fatal(err)
	}
	for path, typ := range map[string]string{
		"@timestamp": "date", "message": "text", "message.keyword": "keyword", "log": "object",
		"log.level": "keyword", "log.origin.file.line": "long", "error.message.keyword": "keyword",
	} {
		if f[path] != typ {
			t.Errorf("%s: %q, want %q", path, f[path], typ)
		}
	}
	if _, err := MappedFields([]byte(`{"index_patterns":["x-*"],"template":{}}`)); err == nil {
		t.Error("a template without properties must be an error")
	}
	if _, err := MappedFields([]byte(`{`)); err == nil {
		t.Error("bad JSON must be an error")
	}
}

// The document shapes other packages write (the contract in the issue):
// every field of each must be mapped explicitly, with a fitting type.
func TestTemplatesMapEveryContractField(t *testing.T) {
	drift := `{"@timestamp": "2025-01-02T03:04:05Z", "model": {"name": "support", "version": "v3"}, "topic": "triage.support-queries",
	 "window": {"start": "2025-01-02T03:00:00Z", "end": "2025-01-02T03:04:05Z", "count": 500, "kind": "count"},
	 "label_psi": 0.03, "label_js": 0.01,
	 "label_shares": [{"label": "card_arrival", "share": 0.02, "reference": 0.013}],
	 "confidence": {"mean": 0.81, "p10": 0.4, "p50": 0.9, "p90": 0.99, "low_share": 0.12, "margin_mean": 0.6},
	 "estimated_accuracy": 0.91, "estimated_accuracy_cbpe": 0.9, "true_accuracy": 0.92, "labelled": 120,
	 "input": {"tokens_mean": 12.5, "oov_rate": 0.03},
	 "embedding": {"centroid_distance": 0.31},
	 "domain_auc": 0.55,
	 "drift": false, "alerts": ["label_psi", "estimated_accuracy"],
	 "thresholds": [{"statistic": "label_psi", "direction": "above", "value": 0.1}]}`
	predictions := `{"@timestamp": "2025-01-02T03:04:05Z", "event": {"id": "q1"}, "model": {"name": "support", "version": "v3"},
	 "topic": "triage.support-queries", "label": "card_arrival",
	 "confidence": 0.93, "calibrated_confidence": 0.9, "margin": 0.8, "latency_ms": 3.2, "truncated": false,
	 "input": {"tokens": 14, "oov_rate": 0.0}}`
	var logLine bytes.Buffer
	logger := slog.New(NewECSJSONHandler(&logLine, &slog.HandlerOptions{AddSource: true}, "triage"))
	logger.Error("dead letter", "triage.role", "consumer", "event.action", "dead-letter", "event.reason", "bad-json",
		"err", errors.New("x"), "model", "support", "model.version", "v3", "topic", "t", "log.logger", "consumer")

	for kind, doc := range map[string][]byte{KindDrift: []byte(drift), KindPredictions: []byte(predictions), KindLogs: logLine.Bytes()} {
		mapped, err := MappedFields(Templates()["triage-"+kind])
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		leaves := map[string]any{}
		flatten("", v, leaves)
		if len(leaves) < 8 {
			t.Fatalf("%s: only %d fields in the example", kind, len(leaves))
		}
		for path, val := range leaves {
			typ, ok := mapped[path]
			if !ok {
				t.Errorf("%s: field %s is not mapped in triage-%s", kind, path, kind)
				continue
			}
			if !fits(typ, val) {
				t.Errorf("%s: field %s is mapped %s, which does not fit %#v", kind, path, typ, val)
			}
		}
	}
}

// flatten records leaf values by dotted path; arrays of objects contribute
// their objects' fields (as Elasticsearch maps them), keys with dots split.
func flatten(prefix string, v any, out map[string]any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			flatten(prefix+k+".", e, out)
		}
	case []any:
		for _, e := range x {
			flatten(prefix, e, out)
		}
	default:
		out[strings.TrimSuffix(prefix, ".")] = x
	}
}

func fits(typ string, v any) bool {
	switch x := v.(type) {
	case float64:
		return typ == "double" || typ == "float" || typ == "long" || typ == "integer" || typ == "scaled_float"
	case bool:
		return typ == "boolean"
	case string:
		if _, err := time.Parse(time.RFC3339, x); err == nil {
			return typ == "date"
		}
		return typ == "keyword" || typ == "text"
	}
	return false
}
