package gateway

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/triage-ml/triage/drift"
	"github.com/triage-ml/triage/monitor"
	"github.com/triage-ml/triage/schemas"
)

// TestUIDriftView checks the page's drift view against GET /v1/drift: every
// field the page reads is one the API writes, and the page stays within its
// Content-Security-Policy.
func TestUIDriftView(t *testing.T) {
	ui, err := loadUI()
	if err != nil {
		t.Fatal(err)
	}
	page := string(ui.html)
	script, _ := inlineBlock(page, "script")

	for _, want := range []string{`id="tab-drift"`, `href="#drift"`, `id="drift-streams"`, `"/v1/drift?limit="`,
		"createElementNS", "setTimeout(loadDrift", "e.status === 503"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Inline style attributes need 'unsafe-inline' (or 'unsafe-hashes'), which
	// the policy does not grant: styles go through the <style> block or CSSOM.
	if m := regexp.MustCompile(`(?i)<[a-z][^>]*\sstyle=`).FindString(page); m != "" {
		t.Errorf("page has an inline style attribute, which its CSP blocks: %s", m)
	}
	for _, bad := range []string{`setAttribute("style"`, "unsafe-inline", "eval(", "new Function", "insertAdjacentHTML", "document.write"} {
		if strings.Contains(script, bad) || strings.Contains(ui.csp, bad) {
			t.Errorf("page or CSP contains %q", bad)
		}
	}
	style, _ := inlineBlock(page, "style")
	if !strings.Contains(ui.csp, "style-src '"+cspHash(style)+"'") {
		t.Errorf("CSP %q does not pin the inline style", ui.csp)
	}

	// A fully populated report: the JSON keys the page reads must exist.
	acc, auc := 0.9, 0.7
	w := schemas.DriftWindow{Timestamp: time.Unix(60, 0).UTC(), Model: schemas.ModelRef{Name: "support", Version: "v1"},
		Topic: "triage.support-queries", Window: schemas.WindowRef{Start: time.Unix(0, 0).UTC(), End: time.Unix(60, 0).UTC(), Count: 50, Kind: "count"},
		LabelPSI: 0.1, LabelJS: 0.02, LabelShares: []schemas.LabelShare{{Label: "card_arrival", Share: 0.2, Reference: 0.1}},
		Confidence:        schemas.ConfidenceStat{Mean: 0.9, P10: 0.7, P50: 0.95, P90: 0.99, LowShare: 0.05, MarginMean: 0.8},
		EstimatedAccuracy: 0.9, EstimatedAccuracyCBPE: 0.88, TrueAccuracy: &acc, Labelled: 3,
		Input: schemas.InputStat{TokensMean: 11, OOVRate: 0.01}, Embedding: &schemas.EmbeddingStat{CentroidDistance: 0.2}, DomainAUC: &auc,
		Drift: true, Alerts: []string{"label_psi"}, Thresholds: []schemas.Threshold{{Statistic: "label_psi", Direction: "above", Value: 0.3}}}
	rep := monitor.Report{GeneratedAt: time.Unix(61, 0).UTC(), Streams: []monitor.StreamReport{{Model: "support", Topic: w.Topic,
		Version: "v1", DriftEvents: 1, Open: &monitor.OpenWindow{Count: 3, Size: 50, Start: time.Unix(61, 0).UTC()},
		Reference: &monitor.ReferenceSummary{ValAccuracy: 0.92, Temperature: 0.7, ECEBefore: 0.1, ECEAfter: 0.03, WindowSize: 500,
			FalseAlarmRate: 0.01, Bootstraps: 1000, Thresholds: w.Thresholds},
		Windows: []schemas.DriftWindow{w}}}}
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				keys[k] = true
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(doc)
	read := []string{"generated_at", "streams", "model", "topic", "version", "drift_events", "open", "count", "size", "start",
		"reference", "val_accuracy", "temperature", "ece_before", "ece_after", "window_size", "false_alarm_rate", "bootstraps",
		"thresholds", "statistic", "direction", "value", "windows", "@timestamp", "name", "window", "kind",
		"label_psi", "label_js", "label_shares", "label", "share", "confidence", "mean", "p10", "p90",
		"estimated_accuracy", "estimated_accuracy_cbpe", "true_accuracy", "input", "tokens_mean", "oov_rate",
		"embedding", "centroid_distance", "drift", "alerts"}
	for _, k := range read {
		if !keys[k] {
			t.Errorf("the page reads %q, which GET /v1/drift does not write", k)
		}
		if !strings.Contains(script, "."+k) && !strings.Contains(script, `"`+k+`"`) {
			t.Errorf("the page does not read %q (update this list with the page)", k)
		}
	}
	// Every statistic the drift package can alarm on has a display name.
	for _, stat := range []string{drift.StatLabelPSI, drift.StatLabelJS, drift.StatConfidenceMean, drift.StatEstimatedAccuracy,
		drift.StatOOVRate, drift.StatTokensMeanHigh, drift.StatTokensMeanLow, drift.StatEmbedDist} {
		if !strings.Contains(script, "    "+stat+": { short: ") {
			t.Errorf("page has no display name for statistic %q", stat)
		}
	}
}
