package kibana_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/triage-ml/triage/monitoring/elastic"
	"github.com/triage-ml/triage/monitoring/kibana"
)

// mappings gives each template's index pattern its mapped fields.
func mappings(t *testing.T) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for name, tpl := range elastic.Templates() {
		fields, err := elastic.MappedFields(tpl)
		if err != nil {
			t.Fatalf("template %s: %v", name, err)
		}
		patterns, err := elastic.IndexPatterns(tpl)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range patterns {
			out[p] = fields
		}
	}
	return out
}

func parseAll(t *testing.T, files map[string][]byte) []kibana.Object {
	t.Helper()
	var objs []kibana.Object
	for name, data := range files {
		o, err := kibana.Parse(name, data)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	return objs
}

func realFiles(t *testing.T) map[string][]byte {
	t.Helper()
	files, err := kibana.Files()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("only %d saved-object files", len(files))
	}
	return files
}

func TestSavedObjectsReferenceOnlyMappedFields(t *testing.T) {
	objs := parseAll(t, realFiles(t))
	for _, err := range kibana.Check(objs, mappings(t)) {
		t.Error(err)
	}

	// The checker read what the dashboards show (a checker that finds
	// nothing passes everything).
	byKey := map[string]kibana.Object{}
	have := map[string]bool{}
	for _, o := range objs {
		byKey[o.Type+"/"+o.ID] = o
		have[o.Type+"/"+o.ID] = true
	}
	seen := map[string]bool{}
	for _, o := range objs {
		refs, err := kibana.FieldRefs(o, byKey)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range refs {
			seen[r.IndexPattern+" "+r.Field] = true
		}
	}
	for _, want := range []string{
		"triage-drift @timestamp", "triage-drift label_psi", "triage-drift model.name", "triage-drift estimated_accuracy",
		"triage-drift true_accuracy", "triage-drift confidence.mean", "triage-drift confidence.p10", "triage-drift confidence.p90",
		"triage-drift drift", "triage-drift alerts", "triage-predictions label", "triage-predictions @timestamp",
		"triage-logs @timestamp", "triage-logs triage.role", "triage-logs log.level", "triage-logs event.reason",
		"triage-logs event.action", "triage-logs message", "triage-logs error.message",
	} {
		if !seen[want] {
			t.Errorf("no saved object references %s", want)
		}
	}
	for _, want := range []string{
		"index-pattern/triage-drift", "index-pattern/triage-predictions", "index-pattern/triage-logs",
		"dashboard/triage-drift-dashboard", "dashboard/triage-logs-dashboard",
		"search/triage-drift-alerts", "search/triage-logs-recent-errors",
	} {
		if !have[want] {
			t.Errorf("missing saved object %s", want)
		}
	}
}

// lensObject is a minimal Lens visualization on triage-logs-*.
func lensObject(field, query string) string {
	return fmt.Sprintf(`{"id":"lens-1","type":"lens","attributes":{"title":"lens","state":{"datasourceStates":{"indexpattern":{"layers":{"l1":{"columns":{"c1":{"operationType":"terms","sourceField":%q},"c2":{"operationType":"count","sourceField":"___records___"}}}}}},"query":{"query":%q,"language":"kuery"}}},"references":[{"id":"triage-logs","name":"indexpattern-datasource-layer-l1","type":"index-pattern"}]}`, field, query)
}

// Each mutation plants one bogus field (or reference); the checker must
// name the object and the field.
func TestCheckerCatchesBogusFields(t *testing.T) {
	cases := []struct {
		name, file, old, new string
		wantID, wantField    string
	}{
		{"agg field", "drift-dashboard.ndjson", `\"field\":\"label_psi\"`, `\"field\":\"label_pssi\"`, "triage-drift-label-psi", "label_pssi"},
		{"field of another index", "drift-dashboard.ndjson", `\"field\":\"confidence.p10\"`, `\"field\":\"label\"`, "triage-drift-confidence", `"label"`},
		{"kuery", "drift-dashboard.ndjson", `drift:true`, `drifted:true`, "triage-drift-alerts", "drifted"},
		{"filter", "logs-dashboard.ndjson", `\"key\":\"event.action\"`, `\"key\":\"event.act\"`, "triage-logs-dead-letters-by-reason", "event.act"},
		{"filter query", "logs-dashboard.ndjson", `\"match_phrase\":{\"event.action\"`, `\"match_phrase\":{\"event.verb\"`, "triage-logs-dead-letters-by-reason", "event.verb"},
		{"search column", "logs-dashboard.ndjson", `"error.message","event.reason"`, `"error.msg","event.reason"`, "triage-logs-recent-errors", "error.msg"},
		{"search sort", "logs-dashboard.ndjson", `"sort":[["@timestamp","desc"]],"title":"Triage logs: recent errors"`, `"sort":[["timestamp","desc"]],"title":"Triage logs: recent errors"`, "triage-logs-recent-errors", `"timestamp"`},
		{"time field", "index-patterns.ndjson", `"timeFieldName":"@timestamp","title":"triage-logs-*"`, `"timeFieldName":"@time","title":"triage-logs-*"`, "triage-logs", "@time"},
		{"dangling reference", "logs-dashboard.ndjson", `{"id":"triage-logs-recent-errors","name":"panel_2"`, `{"id":"triage-logs-gone","name":"panel_2"`, "triage-logs-dashboard", "triage-logs-gone"},
		{"lens sourceField", "extra.ndjson", "", lensObject("triage.rolle", ""), "lens-1", "triage.rolle"},
		{"lens query", "extra.ndjson", "", lensObject("triage.role", "log.lvl:error"), "lens-1", "log.lvl"},
	}
	m := mappings(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			files := realFiles(t)
			if tc.old == "" {
				files[tc.file] = []byte(tc.new + "\n")
			} else {
				src := string(files[tc.file])
				if !strings.Contains(src, tc.old) {
					t.Fatalf("%s does not contain %s: the mutation would test nothing", tc.file, tc.old)
				}
				files[tc.file] = []byte(strings.Replace(src, tc.old, tc.new, 1))
			}
			errs := kibana.Check(parseAll(t, files), m)
			msg := errors.Join(errs...)
			if msg == nil {
				t.Fatalf("no error for the planted %s", tc.wantField)
			}
			if !slices.ContainsFunc(errs, func(e error) bool {
				return strings.Contains(e.Error(), `"`+tc.wantID+`"`) && strings.Contains(e.Error(), tc.wantField)
			}) {
				t.Fatalf("no error names object %q and %s:\n%v", tc.wantID, tc.wantField, msg)
			}
			t.Logf("caught: %v", msg)
		})
	}
}

func TestCheckerAcceptsSubfieldsAndRuntimeFields(t *testing.T) {
	files := realFiles(t)
	files["extra.ndjson"] = []byte(lensObject("message.keyword", `triage.role:"gateway" and not log.level:info`) + "\n" +
		`{"id":"ip","type":"index-pattern","attributes":{"title":"triage-logs-*","timeFieldName":"@timestamp","runtimeFieldMap":"{\"hour\":{\"type\":\"long\"}}","fieldAttrs":"{\"hour\":{}}"},"references":[]}` + "\n")
	for _, err := range kibana.Check(parseAll(t, files), mappings(t)) {
		t.Error(err)
	}
}
