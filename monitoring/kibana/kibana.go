// Package kibana holds Triage's Kibana saved objects (index patterns, the
// drift and logs dashboards, their visualizations and saved searches) as
// NDJSON in Kibana's export format, for setup.sh to import, and a checker
// that every field they reference exists in the index templates'
// mappings (monitoring/elastic): Kibana cannot run here, so a dashboard
// naming a field that no document carries would otherwise go unnoticed.
package kibana

import (
	"bufio"
	"bytes"
	"cmp"
	"embed"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

//go:embed *.ndjson
var files embed.FS

// Files returns the saved-object files by name, in import order (index
// patterns first).
func Files() (map[string][]byte, error) {
	entries, err := files.ReadDir(".")
	if err != nil {
		return nil, fmt.Errorf("embedded saved objects: %w", err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		b, err := files.ReadFile(e.Name())
		if err != nil {
			return nil, fmt.Errorf("embedded saved object file %s: %w", e.Name(), err)
		}
		out[e.Name()] = b
	}
	return out, nil
}

// Object is one saved object.
type Object struct {
	ID         string         `json:"id"`
	Type       string         `json:"type"`
	Attributes map[string]any `json:"attributes"`
	References []Reference    `json:"references"`

	File string `json:"-"`
	Line int    `json:"-"`
}

// Reference is one entry of an object's references array.
type Reference struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
}

func (o Object) String() string {
	return fmt.Sprintf("%s:%d %s %q", o.File, o.Line, o.Type, o.ID)
}

func (o Object) title() string {
	s, _ := o.Attributes["title"].(string)
	return s
}

// Parse reads an NDJSON export: one object per line; blank lines and
// Kibana's trailing export summary are skipped.
func Parse(file string, data []byte) ([]Object, error) {
	var out []Object
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var o Object
		if err := json.Unmarshal(line, &o); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
		if o.ID == "" && o.Type == "" && bytes.Contains(line, []byte(`"exportedCount"`)) {
			continue
		}
		if o.ID == "" || o.Type == "" || o.Attributes == nil {
			return nil, fmt.Errorf("%s:%d: saved object without id, type or attributes", file, n)
		}
		o.File, o.Line = file, n
		out = append(out, o)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return out, nil
}

// FieldRef is one field an object references, and the index pattern (by
// id) whose documents must carry it; "" = any of the files' patterns (a
// dashboard's own query).
type FieldRef struct {
	Field        string
	Where        string // e.g. visState.aggs[2].params.field, query (kuery)
	IndexPattern string
}

// Check checks every object against the others and against mappings (per
// index-pattern title, the mapped field paths → type): it returns one error
// per reference that resolves to no object and per field that is not
// mapped, each naming the file, line, object and field.
func Check(objects []Object, mappings map[string]map[string]string) []error {
	var errs []error
	byKey := map[string]Object{}
	for _, o := range objects {
		k := o.Type + "/" + o.ID
		if prev, dup := byKey[k]; dup {
			errs = append(errs, fmt.Errorf("%s: same type and id as %s", o, prev))
		}
		byKey[k] = o
		if o.title() == "" {
			errs = append(errs, fmt.Errorf("%s: no title", o))
		}
	}
	for _, o := range objects {
		for _, r := range o.References {
			if _, ok := byKey[r.Type+"/"+r.ID]; !ok {
				errs = append(errs, fmt.Errorf("%s: reference %q points to %s %q, which is in none of the files", o, r.Name, r.Type, r.ID))
			}
		}
		refs, err := FieldRefs(o, byKey)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", o, err))
			continue
		}
		for _, fr := range refs {
			errs = append(errs, checkField(o, fr, byKey, mappings)...)
		}
	}
	return errs
}

func checkField(o Object, fr FieldRef, byKey map[string]Object, mappings map[string]map[string]string) []error {
	var patterns []Object
	if fr.IndexPattern == "" {
		for _, k := range slices.Sorted(maps.Keys(byKey)) {
			if p := byKey[k]; p.Type == "index-pattern" {
				patterns = append(patterns, p)
			}
		}
	} else {
		p, ok := byKey["index-pattern/"+fr.IndexPattern]
		if !ok {
			return []error{fmt.Errorf("%s: field %q (%s) belongs to index pattern %q, which is in none of the files", o, fr.Field, fr.Where, fr.IndexPattern)}
		}
		patterns = []Object{p}
	}
	var titles []string
	for _, p := range patterns {
		title := p.title()
		fields, ok := mappings[title]
		if !ok {
			return []error{fmt.Errorf("%s: index pattern %q (%s) matches no index template (have %v)", o, title, p.ID, slices.Sorted(maps.Keys(mappings)))}
		}
		if _, ok := fields[fr.Field]; ok || runtimeField(p, fr.Field) {
			return nil
		}
		titles = append(titles, title)
	}
	return []error{fmt.Errorf("%s: field %q (%s) is not mapped in %s", o, fr.Field, fr.Where, strings.Join(titles, " or "))}
}

// runtimeField: an index pattern may define fields of its own.
func runtimeField(p Object, field string) bool {
	s, _ := p.Attributes["runtimeFieldMap"].(string)
	var m map[string]any
	_ = json.Unmarshal([]byte(s), &m)
	_, ok := m[field]
	return ok
}

// FieldRefs extracts every field o references: index patterns'
// timeFieldName, fields and fieldAttrs; visualizations' visState (any
// "field"-like key: aggs' params.field, TSVB's time_field, …); Lens
// columns' sourceField; saved searches' columns and sort; and in every
// searchSourceJSON the kuery/lucene query and the filters' keys and
// queries. byKey resolves a visualization built on a saved search.
func FieldRefs(o Object, byKey map[string]Object) ([]FieldRef, error) {
	var out []FieldRef
	add := func(field, where, pattern string) {
		if field != "" && !metaField(field) {
			out = append(out, FieldRef{Field: field, Where: where, IndexPattern: pattern})
		}
	}
	refByName := referencesByName(o)
	switch o.Type {
	case "index-pattern":
		if tf, _ := o.Attributes["timeFieldName"].(string); tf != "" {
			add(tf, "timeFieldName", o.ID)
		}
		var fields []struct{ Name string }
		if err := jsonAttr(o, "fields", &fields); err != nil {
			return nil, err
		}
		for _, f := range fields {
			add(f.Name, "fields", o.ID)
		}
		var attrs map[string]any
		if err := jsonAttr(o, "fieldAttrs", &attrs); err != nil {
			return nil, err
		}
		for f := range attrs {
			add(f, "fieldAttrs", o.ID)
		}
		return out, nil
	case "lens":
		if err := lensRefs(o, refByName, add); err != nil {
			return nil, err
		}
		return out, nil
	}

	// The searchSourceJSON's index pattern: direct, or through a saved search.
	var ss searchSource
	if err := searchSourceOf(o, &ss); err != nil {
		return nil, err
	}
	pattern := ""
	if ss.IndexRefName != "" {
		r, ok := refByName[ss.IndexRefName]
		if !ok {
			return nil, fmt.Errorf("searchSourceJSON.indexRefName %q is not in references", ss.IndexRefName)
		}
		pattern = r.ID
	} else if name, _ := o.Attributes["savedSearchRefName"].(string); name != "" {
		r, ok := refByName[name]
		if !ok {
			return nil, fmt.Errorf("savedSearchRefName %q is not in references", name)
		}
		s, ok := byKey["search/"+r.ID]
		if !ok {
			return nil, fmt.Errorf("saved search %q is in none of the files", r.ID)
		}
		var sss searchSource
		if err := searchSourceOf(s, &sss); err != nil {
			return nil, err
		}
		pattern = referencesByName(s)[sss.IndexRefName].ID
	} else if o.Type == "visualization" || o.Type == "search" {
		return nil, fmt.Errorf("no index pattern: searchSourceJSON has no indexRefName")
	}
	for _, f := range queryFields(ss.Query) {
		add(f, "query ("+ss.Query.Language+")", pattern)
	}
	for i, f := range ss.Filter {
		fp := pattern
		if f.Meta.IndexRefName != "" {
			r, ok := refByName[f.Meta.IndexRefName]
			if !ok {
				return nil, fmt.Errorf("filter[%d].meta.indexRefName %q is not in references", i, f.Meta.IndexRefName)
			}
			fp = r.ID
		}
		add(f.Meta.Key, fmt.Sprintf("filter[%d].meta.key", i), fp)
		for _, qf := range dslFields(f.Query) {
			add(qf, fmt.Sprintf("filter[%d].query", i), fp)
		}
	}

	switch o.Type {
	case "visualization":
		var vs any
		if err := jsonAttr(o, "visState", &vs); err != nil {
			return nil, err
		}
		walkFieldKeys(vs, "visState", func(field, where string) { add(field, where, pattern) })
	case "search":
		cols, _ := o.Attributes["columns"].([]any)
		for i, c := range cols {
			s, _ := c.(string)
			add(s, fmt.Sprintf("columns[%d]", i), pattern)
		}
		sorts, _ := o.Attributes["sort"].([]any)
		for i, s := range sorts {
			switch x := s.(type) {
			case []any: // [["@timestamp","desc"]]
				if len(x) > 0 {
					f, _ := x[0].(string)
					add(f, fmt.Sprintf("sort[%d]", i), pattern)
				}
			case string: // old form: ["@timestamp","desc"]
				if i == 0 {
					add(x, "sort", pattern)
				}
			}
		}
	case "dashboard":
		var panels []struct {
			PanelRefName string `json:"panelRefName"`
		}
		if err := jsonAttr(o, "panelsJSON", &panels); err != nil {
			return nil, err
		}
		for i, p := range panels {
			if _, ok := refByName[p.PanelRefName]; !ok {
				return nil, fmt.Errorf("panelsJSON[%d].panelRefName %q is not in references", i, p.PanelRefName)
			}
		}
	}
	return out, nil
}

func referencesByName(o Object) map[string]Reference {
	m := map[string]Reference{}
	for _, r := range o.References {
		m[r.Name] = r
	}
	return m
}

// metaField: fields every index has.
func metaField(f string) bool {
	return f == "_source" || f == "_id" || f == "_index" || f == "_score" || f == "___records___"
}

// query is a saved query: kuery or lucene text, or a DSL object in old exports.
type query struct {
	Query    any    `json:"query"`
	Language string `json:"language"`
}

type searchSource struct {
	IndexRefName string `json:"indexRefName"`
	Query        query  `json:"query"`
	Filter       []struct {
		Meta struct {
			Key          string `json:"key"`
			IndexRefName string `json:"indexRefName"`
		} `json:"meta"`
		Query map[string]any `json:"query"`
	} `json:"filter"`
}

func searchSourceOf(o Object, ss *searchSource) error {
	meta, _ := o.Attributes["kibanaSavedObjectMeta"].(map[string]any)
	s, _ := meta["searchSourceJSON"].(string)
	if s == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(s), ss); err != nil {
		return fmt.Errorf("kibanaSavedObjectMeta.searchSourceJSON: %w", err)
	}
	return nil
}

func jsonAttr(o Object, name string, v any) error {
	s, _ := o.Attributes[name].(string)
	if s == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		return fmt.Errorf("attribute %s: %w", name, err)
	}
	return nil
}

var (
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// A field name before a KQL/Lucene operator: model.name:x, label_psi >= 0.1.
	fieldOp = regexp.MustCompile(`([@A-Za-z_][@\w.*\-]*)\s*(?::|<=|>=|<|>)`)
	// Lucene's _exists_:field names the field after the colon.
	existsOp = regexp.MustCompile(`_exists_\s*:\s*([@A-Za-z_][@\w.\-]*)`)
)

// queryFields returns the field names in a kuery or lucene query string.
func queryFields(q query) []string {
	switch x := q.Query.(type) {
	case string:
		s := quoted.ReplaceAllString(x, `""`)
		var out []string
		for _, m := range existsOp.FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		s = existsOp.ReplaceAllString(s, "")
		for _, m := range fieldOp.FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		return out
	case map[string]any:
		return dslFields(x)
	}
	return nil
}

// dslFields returns the fields an Elasticsearch query names: the key under
// term/match/match_phrase/range/…, and "field" values (exists).
func dslFields(q map[string]any) []string {
	var out []string
	for k, v := range q {
		switch k {
		case "term", "terms", "match", "match_phrase", "match_phrase_prefix", "range", "prefix", "wildcard", "regexp", "fuzzy":
			if m, ok := v.(map[string]any); ok {
				for f := range m {
					if f != "boost" {
						out = append(out, f)
					}
				}
			}
		case "exists":
			if m, ok := v.(map[string]any); ok {
				if f, ok := m["field"].(string); ok {
					out = append(out, f)
				}
			}
		case "query_string":
			if m, ok := v.(map[string]any); ok {
				if s, ok := m["query"].(string); ok {
					out = append(out, queryFields(query{s, "lucene"})...)
				}
			}
		default:
			switch x := v.(type) {
			case map[string]any:
				out = append(out, dslFields(x)...)
			case []any:
				for _, e := range x {
					if m, ok := e.(map[string]any); ok {
						out = append(out, dslFields(m)...)
					}
				}
			}
		}
	}
	return out
}

// fieldKeys are the keys whose string values name a field in visState
// (agg-based, TSVB, Vega-less legacy types).
var fieldKeys = map[string]bool{"field": true, "sourceField": true, "time_field": true, "terms_field": true,
	"timeField": true, "split_terms_field": true, "value_field": true, "geo_field": true}

func walkFieldKeys(v any, where string, add func(field, where string)) {
	switch x := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(x)) {
			w := where + "." + k
			if s, ok := x[k].(string); ok && fieldKeys[k] {
				add(s, w)
				continue
			}
			if k == "query" { // TSVB filters: {"query": "...", "language": "kuery"}
				if s, ok := x[k].(string); ok {
					lang, _ := x["language"].(string)
					for _, f := range queryFields(query{s, lang}) {
						add(f, w)
					}
					continue
				}
			}
			walkFieldKeys(x[k], w, add)
		}
	case []any:
		for i, e := range x {
			walkFieldKeys(e, fmt.Sprintf("%s[%d]", where, i), add)
		}
	}
}

// lensRefs reads a Lens object's layers: each layer's index pattern is the
// reference "indexpattern-datasource-layer-<id>"; its columns' sourceField
// are the fields. The query applies to the first layer's pattern.
func lensRefs(o Object, refByName map[string]Reference, add func(field, where, pattern string)) error {
	state, _ := o.Attributes["state"].(map[string]any)
	ds, _ := state["datasourceStates"].(map[string]any)
	first := ""
	for _, dsName := range []string{"indexpattern", "formBased"} { // 7.x, 8.x names
		d, _ := ds[dsName].(map[string]any)
		layers, _ := d["layers"].(map[string]any)
		for _, id := range slices.Sorted(maps.Keys(layers)) {
			refName := "indexpattern-datasource-layer-" + id
			r, ok := refByName[refName]
			if !ok {
				return fmt.Errorf("lens layer %q: reference %q missing", id, refName)
			}
			first = cmp.Or(first, r.ID)
			walkFieldKeys(layers[id], "state.datasourceStates."+dsName+".layers."+id,
				func(field, where string) { add(field, where, r.ID) })
		}
	}
	if q, ok := state["query"].(map[string]any); ok {
		s, _ := q["query"].(string)
		lang, _ := q["language"].(string)
		for _, f := range queryFields(query{s, lang}) {
			add(f, "state.query", first)
		}
	}
	return nil
}
