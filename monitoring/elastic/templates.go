package elastic

import (
	"embed"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// The templates are hand-written JSON rather than built in Go so that they
// read like what `GET _index_template` returns, and so the Kibana check
// (monitoring/kibana) tests the very bytes that are installed.
//
//go:embed templates/*.json
var templateFS embed.FS

// templatePrefix names each installed template: triage-drift, ….
const templatePrefix = "triage-"

// Templates returns the composable index templates the sink installs with
// PUT _index_template/<name>, by name (triage-drift, triage-predictions,
// triage-logs). The caller gets its own copies.
func Templates() map[string][]byte {
	entries, err := templateFS.ReadDir("templates")
	if err != nil {
		panic(fmt.Sprintf("elastic: embedded templates: %v", err)) // embedded at build time: cannot fail
	}
	out := make(map[string][]byte, len(entries))
	for _, e := range entries {
		b, err := templateFS.ReadFile(path.Join("templates", e.Name()))
		if err != nil {
			panic(fmt.Sprintf("elastic: embedded template %s: %v", e.Name(), err))
		}
		out[templatePrefix+strings.TrimSuffix(e.Name(), ".json")] = b
	}
	return out
}

// templateNames returns Templates' names in a fixed order.
func templateNames(ts map[string][]byte) []string {
	return slices.Sorted(maps.Keys(ts))
}

type templateDoc struct {
	IndexPatterns []string `json:"index_patterns"`
	Template      struct {
		Mappings struct {
			Properties map[string]mappingField `json:"properties"`
		} `json:"mappings"`
	} `json:"template"`
}

type mappingField struct {
	Type       string                  `json:"type"`
	Properties map[string]mappingField `json:"properties"`
	Fields     map[string]mappingField `json:"fields"` // multi-fields: message.keyword
}

// IndexPatterns returns a composable template's index_patterns.
func IndexPatterns(templateJSON []byte) ([]string, error) {
	var t templateDoc
	if err := json.Unmarshal(templateJSON, &t); err != nil {
		return nil, fmt.Errorf("parse index template: %w", err)
	}
	return t.IndexPatterns, nil
}

// MappedFields lists every field path a composable template maps explicitly,
// with its type: leaves ("model.name": "keyword"), multi-fields
// ("message.keyword": "keyword") and the objects above them ("model":
// "object"), which is what Kibana can reference.
func MappedFields(templateJSON []byte) (map[string]string, error) {
	var t templateDoc
	if err := json.Unmarshal(templateJSON, &t); err != nil {
		return nil, fmt.Errorf("parse index template: %w", err)
	}
	if len(t.Template.Mappings.Properties) == 0 {
		return nil, fmt.Errorf("index template %v maps no properties (want template.mappings.properties)", t.IndexPatterns)
	}
	out := map[string]string{}
	var walk func(prefix string, props map[string]mappingField)
	walk = func(prefix string, props map[string]mappingField) {
		for name, f := range props {
			p := prefix + name
			typ := f.Type
			if typ == "" {
				typ = "object" // properties without a type: ES's default
			}
			out[p] = typ
			walk(p+".", f.Properties)
			for sub, mf := range f.Fields {
				out[p+"."+sub] = mf.Type
			}
		}
	}
	walk("", t.Template.Mappings.Properties)
	return out, nil
}
