package grafana

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// Expr is one PromQL query of one dashboard panel, as written (Grafana
// variables unexpanded).
type Expr struct {
	Dashboard string // dashboard uid
	Panel     string // panel title
	RefID     string
	Expr      string
}

// Expressions returns every PromQL expression of every panel of every
// dashboard, in layout order.
func Expressions() ([]Expr, error) {
	ds, err := Dashboards()
	if err != nil {
		return nil, err
	}
	var out []Expr
	for _, d := range ds {
		for _, p := range panels(d) {
			for _, t := range p.Targets {
				pq, ok := t.(prometheus.Dataquery)
				if !ok {
					return nil, fmt.Errorf("dashboard %s, panel %q: target %T is not a Prometheus query", *d.Uid, title(p), t)
				}
				out = append(out, Expr{Dashboard: *d.Uid, Panel: title(p), RefID: deref(pq.RefId), Expr: pq.Expr})
			}
		}
	}
	return out, nil
}

// Variable is one query variable of a dashboard: a label_values(...) query.
type Variable struct {
	Dashboard, Name, Query string
}

// Variables returns the query variables of every dashboard.
func Variables() ([]Variable, error) {
	ds, err := Dashboards()
	if err != nil {
		return nil, err
	}
	var out []Variable
	for _, d := range ds {
		for _, v := range d.Templating.List {
			if v.Type != "query" || v.Query == nil || v.Query.String == nil {
				continue
			}
			out = append(out, Variable{Dashboard: *d.Uid, Name: v.Name, Query: *v.Query.String})
		}
	}
	return out, nil
}

// panels flattens a dashboard's panels, rows' nested panels included.
func panels(d dashboard.Dashboard) []dashboard.Panel {
	var out []dashboard.Panel
	for _, p := range d.Panels {
		switch {
		case p.Panel != nil:
			out = append(out, *p.Panel)
		case p.RowPanel != nil:
			out = append(out, p.RowPanel.Panels...)
		}
	}
	return out
}

func title(p dashboard.Panel) string { return deref(p.Title) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// ExampleValues are concrete values for every variable the dashboards use,
// matching what `triage dev` exports when Prometheus scrapes it as job
// triage-dev: what the live test and the offline PromQL check substitute.
// $__rate_interval is 1m: four scrape intervals at the default 15s.
func ExampleValues() map[string]string {
	return map[string]string{
		"job":             "triage-dev",
		"model":           "support",
		"topic":           "triage.support-queries",
		"datasource":      DatasourceUID,
		"__rate_interval": "1m",
		"__interval":      "15s",
		"__range":         "5m",
	}
}

// Grafana's variable syntaxes: $name, ${name}, ${name:format}, [[name]].
var varRef = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]`)

// Concrete replaces every Grafana variable in expr with its value from
// values; a variable without a value is an error (a typo in a panel, or a
// variable the dashboard does not define).
func Concrete(expr string, values map[string]string) (string, error) {
	var missing []string
	out := varRef.ReplaceAllStringFunc(expr, func(ref string) string {
		m := varRef.FindStringSubmatch(ref)
		name := m[1] + m[2] + m[3]
		v, ok := values[name]
		if !ok {
			missing = append(missing, name)
			return ref
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("no value for variable(s) %v in %q", missing, expr)
	}
	return out, nil
}

// VariableNames lists the distinct variables expr refers to.
func VariableNames(expr string) []string {
	seen := map[string]bool{}
	for _, m := range varRef.FindAllStringSubmatch(expr, -1) {
		seen[m[1]+m[2]+m[3]] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Render returns each dashboard's JSON by file name (<uid>.json): indented,
// newline-terminated, HTML characters unescaped so PromQL's < > & stay
// readable in review.
func Render() (map[string][]byte, error) {
	ds, err := Dashboards()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(ds))
	for _, d := range ds {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("encode dashboard %s: %w", *d.Uid, err)
		}
		out[*d.Uid+".json"] = buf.Bytes()
	}
	return out, nil
}
