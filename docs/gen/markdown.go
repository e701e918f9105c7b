package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// omap is a JSON object that keeps its keys in document order (schema
// files list properties in a meaningful order; Go maps would sort them).
type omap struct {
	keys []string
	m    map[string]any
}

func (o *omap) get(k string) any {
	if o == nil {
		return nil
	}
	return o.m[k]
}

func (o *omap) str(k string) string { s, _ := o.get(k).(string); return s }

func (o *omap) obj(k string) *omap { v, _ := o.get(k).(*omap); return v }

func (o *omap) arr(k string) []any { v, _ := o.get(k).([]any); return v }

func (o *omap) has(k string) bool {
	if o == nil {
		return false
	}
	_, ok := o.m[k]
	return ok
}

// ks is the object's keys in document order (none for a nil object).
func (o *omap) ks() []string {
	if o == nil {
		return nil
	}
	return o.keys
}

// parseOrdered decodes JSON into *omap, []any, string, json.Number, bool
// and nil.
func parseOrdered(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := &omap{m: map[string]any{}}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				if _, dup := o.m[k]; !dup {
					o.keys = append(o.keys, k)
				}
				o.m[k] = v
			}
			_, err := dec.Token() // '}'
			return o, err
		case '[':
			a := []any{}
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := dec.Token() // ']'
			return a, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	default:
		return t, nil
	}
}

// inline escapes prose for a markdown table cell or paragraph: code spans
// (between backticks) are kept as they are, everything else has the
// characters that markdown or HTML would interpret escaped; newlines become
// spaces when cell is set.
func inline(s string, cell bool) string {
	if cell {
		s = strings.Join(strings.Fields(s), " ")
	}
	parts := strings.Split(s, "`")
	if len(parts)%2 == 0 { // unbalanced backticks: treat everything as prose
		parts = []string{s}
	}
	var b strings.Builder
	for i, p := range parts {
		if i%2 == 1 {
			b.WriteString("`" + strings.ReplaceAll(p, "|", `\|`) + "`")
			continue
		}
		for _, r := range p {
			switch r {
			case '<':
				b.WriteString("&lt;")
			case '>':
				b.WriteString("&gt;")
			case '&':
				b.WriteString("&amp;")
			case '\\', '*', '[', ']', '|':
				b.WriteString(`\` + string(r))
			case '_':
				b.WriteString(`\_`)
			default:
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

// code is s as one inline code span, whatever it contains.
func code(s string) string {
	if s == "" {
		return `""`
	}
	s = strings.ReplaceAll(s, "|", `\|`)
	if strings.Contains(s, "`") {
		return "`` " + s + " ``"
	}
	return "`" + s + "`"
}

// indent prefixes every non-empty line of s with prefix.
func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// schemaRenderer turns JSON Schemas (draft 2020-12, which OpenAPI 3.1
// uses) into markdown property tables. refLink renders a "$ref" target as
// a link; nil means refs are not expected.
type schemaRenderer struct {
	refLink func(ref string) string
}

type propRow struct {
	path, typ, desc string
	required        bool
}

// typeOf describes a schema's type in one short phrase, with a link for
// references and constraints folded in.
func (r schemaRenderer) typeOf(s *omap) string {
	if s == nil {
		return "any"
	}
	if ref := s.str("$ref"); ref != "" {
		return r.link(ref)
	}
	if all := s.arr("allOf"); len(all) == 1 {
		if inner, ok := all[0].(*omap); ok {
			return r.typeOf(inner)
		}
	}
	for _, comb := range []string{"oneOf", "anyOf"} {
		if alts := s.arr(comb); len(alts) > 0 {
			var ts []string
			for _, a := range alts {
				ao, _ := a.(*omap)
				ts = append(ts, r.typeOf(ao))
			}
			return strings.Join(ts, " or ")
		}
	}
	var t string
	switch v := s.get("type").(type) {
	case string:
		t = v
	case []any:
		var ts []string
		for _, x := range v {
			ts = append(ts, fmt.Sprint(x))
		}
		t = strings.Join(ts, " or ")
	}
	switch t {
	case "array":
		items := s.obj("items")
		t = "array of " + r.typeOf(items)
		if lim := bounds(s, "minItems", "maxItems"); lim != "" {
			t += ", " + lim + " items"
		}
		return t
	case "object", "":
		if ap := s.obj("additionalProperties"); ap != nil && !s.has("properties") {
			return "map of " + r.typeOf(ap)
		}
		if t == "" {
			if s.has("properties") {
				return "object"
			}
			if s.has("const") {
				return "const " + code(fmt.Sprint(s.get("const")))
			}
			return "any"
		}
		return t
	}
	if f := s.str("format"); f != "" {
		t += " (" + f + ")"
	}
	if ct := s.str("contentEncoding"); ct != "" {
		t += " (" + ct + ")"
	}
	if ct := s.str("contentMediaType"); ct != "" {
		t += " (" + ct + ")"
	}
	switch t {
	case "integer", "number":
		if lim := bounds(s, "minimum", "maximum"); lim != "" {
			t += ", " + lim
		}
	default:
		if lim := bounds(s, "minLength", "maxLength"); lim != "" {
			t += ", " + lim + " characters"
		}
	}
	return t
}

func (r schemaRenderer) link(ref string) string {
	if r.refLink == nil {
		return code(ref)
	}
	return r.refLink(ref)
}

// bounds renders a min/max pair: "0..1", "≥ 1", "≤ 128", or "".
func bounds(s *omap, minKey, maxKey string) string {
	lo, hasLo := s.get(minKey).(json.Number)
	hi, hasHi := s.get(maxKey).(json.Number)
	switch {
	case hasLo && hasHi:
		return string(lo) + ".." + string(hi)
	case hasLo:
		return "≥ " + string(lo)
	case hasHi:
		return "≤ " + string(hi)
	}
	return ""
}

// describe is a property's description with its enumeration and default.
func describe(s *omap) string {
	d := inline(s.str("description"), true)
	if s == nil {
		return d
	}
	if all := s.arr("allOf"); len(all) == 1 && d == "" {
		if inner, ok := all[0].(*omap); ok {
			d = inline(inner.str("description"), true)
		}
	}
	if enum := s.arr("enum"); len(enum) > 0 {
		var vs []string
		for _, e := range enum {
			vs = append(vs, code(fmt.Sprint(e)))
		}
		d = strings.TrimSpace(d + " One of " + strings.Join(vs, ", ") + ".")
	}
	if def, ok := s.m["default"]; ok {
		d = strings.TrimSpace(d + " Default " + code(fmt.Sprint(def)) + ".")
	}
	return d
}

// rows flattens a schema's properties (and those of inline objects and
// arrays of inline objects below them) into table rows with dotted paths.
func (r schemaRenderer) rows(s *omap, prefix string) []propRow {
	props := s.obj("properties")
	if props == nil {
		return nil
	}
	req := map[string]bool{}
	for _, x := range s.arr("required") {
		if name, ok := x.(string); ok {
			req[name] = true
		}
	}
	var out []propRow
	for _, name := range props.ks() {
		p, _ := props.get(name).(*omap)
		path := prefix + name
		out = append(out, propRow{path: path, typ: r.typeOf(p), desc: describe(p), required: req[name]})
		switch {
		case p.has("properties"):
			out = append(out, r.rows(p, path+".")...)
		case p.obj("items").has("properties"):
			out = append(out, r.rows(p.obj("items"), path+"[].")...)
		}
	}
	return out
}

// table renders a schema's properties as a markdown table, or a one-line
// type description when it has none.
func (r schemaRenderer) table(s *omap) string {
	rows := r.rows(s, "")
	if len(rows) == 0 {
		return "Type: " + r.typeOf(s) + ".\n"
	}
	var b strings.Builder
	b.WriteString("| field | type | required | description |\n|---|---|---|---|\n")
	for _, row := range rows {
		req := ""
		if row.required {
			req = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", code(row.path), row.typ, req, row.desc)
	}
	if ap, ok := s.get("additionalProperties").(bool); ok && !ap {
		b.WriteString("\nNo other fields are allowed.\n")
	}
	return b.String()
}

// sortedKeys returns an object's keys sorted (for maps whose document
// order carries no meaning, e.g. status codes).
func sortedKeys(o *omap) []string {
	if o == nil {
		return nil
	}
	ks := append([]string(nil), o.ks()...)
	sort.Strings(ks)
	return ks
}

// prettyJSON re-indents raw JSON with two spaces.
func prettyJSON(raw []byte) (string, error) {
	var b bytes.Buffer
	if err := json.Indent(&b, bytes.TrimSpace(raw), "", "  "); err != nil {
		return "", err
	}
	return b.String(), nil
}
