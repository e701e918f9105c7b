package main

import (
	"fmt"
	"sort"
	"strings"
)

// httpMethods are the OpenAPI operation keys of a path item, in the order
// an operation list shows them.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// restOperation is one method on one path of the document.
type restOperation struct {
	method, path string
	op           *omap
}

// anchor is the operation's heading id: op- and its operationId, lower-cased.
func (o restOperation) anchor() string {
	id := o.op.str("operationId")
	if id == "" {
		id = o.method + "-" + o.path
	}
	return "op-" + slug(id)
}

// slug keeps letters and digits, lower-cased, and turns runs of anything
// else into one '-'.
func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimSuffix(b.String(), "-")
}

// restOperations lists every operation of an OpenAPI document, by path
// then method.
func restOperations(doc *omap) []restOperation {
	paths := doc.obj("paths")
	var out []restOperation
	for _, p := range sortedKeys(paths) {
		item := paths.obj(p)
		for _, m := range httpMethods {
			if op := item.obj(m); op != nil {
				out = append(out, restOperation{method: m, path: p, op: op})
			}
		}
	}
	return out
}

// renderREST renders an OpenAPI 3.1 document as the REST reference page.
func renderREST(raw []byte) (string, error) {
	v, err := parseOrdered(raw)
	if err != nil {
		return "", fmt.Errorf("openapi document: %w", err)
	}
	doc, ok := v.(*omap)
	if !ok || !strings.HasPrefix(doc.str("openapi"), "3.") {
		return "", fmt.Errorf("openapi document: not an OpenAPI 3 object")
	}
	comps := doc.obj("components")
	schemaNames := map[string]bool{}
	for _, n := range comps.obj("schemas").ks() {
		schemaNames[n] = true
	}
	var badRefs []string
	sr := schemaRenderer{refLink: func(ref string) string {
		name, ok := strings.CutPrefix(ref, "#/components/schemas/")
		if !ok || !schemaNames[name] {
			badRefs = append(badRefs, ref)
			return code(ref)
		}
		return "[" + name + "](#schema-" + slug(name) + ")"
	}}

	var b strings.Builder
	info := doc.obj("info")
	b.WriteString(generatedNote("the gateway's OpenAPI document (`GET /openapi.json`)"))
	fmt.Fprintf(&b, "# REST API\n\n")
	fmt.Fprintf(&b, "%s, OpenAPI %s, API version %s. The gateway serves this document at `GET /openapi.json`; "+
		"every route below is in it, and a test keeps the document and the registered routes in step.\n\n",
		inline(info.str("title"), false), doc.str("openapi"), code(info.str("version")))
	if d := info.str("description"); d != "" {
		b.WriteString(d + "\n\n")
	}

	// Authentication.
	if schemes := comps.obj("securitySchemes"); schemes != nil {
		b.WriteString("## Authentication\n\n| scheme | type | how | description |\n|---|---|---|---|\n")
		for _, name := range schemes.ks() {
			s := schemes.obj(name)
			how := ""
			switch s.str("type") {
			case "http":
				how = "`Authorization: " + strings.ToUpper(s.str("scheme")[:1]) + s.str("scheme")[1:] + " <key>`"
				if f := s.str("bearerFormat"); f != "" {
					how += ", key format " + code(f)
				}
			case "apiKey":
				how = "`" + s.str("name") + ": <key>` (" + s.str("in") + ")"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", code(name), s.str("type"), how, inline(s.str("description"), true))
		}
		b.WriteString("\nRoutes marked *open* need no key; every other route names the scope its key must hold " +
			"(`admin` holds every scope). Keys are created with `triage apikey add` (see the " +
			"[operations runbook](../operations.md#rotate-api-keys)).\n\n")
	}

	// Operations grouped by tag, in the document's tag order.
	ops := restOperations(doc)
	var tagOrder []string
	tagDesc := map[string]string{}
	for _, t := range doc.arr("tags") {
		if to, ok := t.(*omap); ok {
			tagOrder = append(tagOrder, to.str("name"))
			tagDesc[to.str("name")] = to.str("description")
		}
	}
	byTag := map[string][]restOperation{}
	for _, o := range ops {
		tag := "other"
		if tags := o.op.arr("tags"); len(tags) > 0 {
			tag, _ = tags[0].(string)
		}
		if _, known := tagDesc[tag]; !known {
			tagOrder = append(tagOrder, tag)
			tagDesc[tag] = ""
		}
		byTag[tag] = append(byTag[tag], o)
	}

	b.WriteString("## Routes\n\n| method | path | summary | scope |\n|---|---|---|---|\n")
	for _, tag := range tagOrder {
		for _, o := range byTag[tag] {
			fmt.Fprintf(&b, "| %s | [%s](#%s) | %s | %s |\n", strings.ToUpper(o.method), code(o.path), o.anchor(),
				inline(o.op.str("summary"), true), scopeOf(o.op))
		}
	}
	b.WriteString("\n")

	for _, tag := range tagOrder {
		if len(byTag[tag]) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s {#tag-%s}\n\n", titleCase(tag), slug(tag))
		if d := tagDesc[tag]; d != "" {
			b.WriteString(upperFirst(inline(d, false)) + ".\n\n")
		}
		for _, o := range byTag[tag] {
			renderOperation(&b, o, sr)
		}
	}

	// Shared error responses.
	if resps := comps.obj("responses"); resps != nil {
		b.WriteString("## Error responses {#errors}\n\n" +
			"Every error has the same body ([ErrorResponse](#schema-errorresponse)). Operations list the statuses they can answer with.\n\n" +
			"| name | description | headers |\n|---|---|---|\n")
		for _, name := range resps.ks() {
			r := resps.obj(name)
			fmt.Fprintf(&b, "| <span id=\"response-%s\"></span>%s | %s | %s |\n", slug(name), code(name),
				inline(r.str("description"), true), headerList(r))
		}
		b.WriteString("\n")
	}

	// Schemas.
	if schemas := comps.obj("schemas"); schemas != nil {
		b.WriteString("## Schemas {#schemas}\n\n")
		for _, name := range sortedKeys(schemas) {
			fmt.Fprintf(&b, "### %s {#schema-%s}\n\n", name, slug(name))
			s := schemas.obj(name)
			if d := s.str("description"); d != "" {
				b.WriteString(inline(d, false) + "\n\n")
			}
			b.WriteString(sr.table(s) + "\n")
		}
	}
	if len(badRefs) > 0 {
		return "", fmt.Errorf("openapi document: unresolved references %v", badRefs)
	}
	return b.String(), nil
}

func scopeOf(op *omap) string {
	if s := op.str("x-required-scope"); s != "" {
		return code(s)
	}
	if sec, ok := op.get("security").([]any); ok && len(sec) == 0 {
		return "*open*"
	}
	return "API key"
}

func renderOperation(b *strings.Builder, o restOperation, sr schemaRenderer) {
	op := o.op
	fmt.Fprintf(b, "### `%s %s` {#%s}\n\n", strings.ToUpper(o.method), o.path, o.anchor())
	fmt.Fprintf(b, "**%s** — scope %s, operation id %s.\n\n", inline(op.str("summary"), false), scopeOf(op), code(op.str("operationId")))
	if d := strings.TrimSpace(op.str("description")); d != "" {
		b.WriteString(d + "\n\n")
	}
	if params := op.arr("parameters"); len(params) > 0 {
		b.WriteString("**Parameters**\n\n| name | in | type | required | description |\n|---|---|---|---|---|\n")
		for _, p := range params {
			po, _ := p.(*omap)
			req := ""
			if r, _ := po.get("required").(bool); r {
				req = "yes"
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", code(po.str("name")), po.str("in"), sr.typeOf(po.obj("schema")), req, describe(po))
		}
		b.WriteString("\n")
	}
	if body := op.obj("requestBody"); body != nil {
		req := "optional"
		if r, _ := body.get("required").(bool); r {
			req = "required"
		}
		fmt.Fprintf(b, "**Request body** (%s)\n\n", req)
		if d := body.str("description"); d != "" {
			b.WriteString(inline(d, false) + "\n\n")
		}
		content := body.obj("content")
		for _, ct := range content.ks() {
			s := content.obj(ct).obj("schema")
			if s.has("properties") {
				fmt.Fprintf(b, "`%s`:\n\n%s\n", ct, sr.table(s))
			} else {
				fmt.Fprintf(b, "`%s`: %s\n\n", ct, sr.typeOf(s))
			}
		}
	}
	b.WriteString("**Responses**\n\n| status | description | body |\n|---|---|---|\n")
	resps := op.obj("responses")
	codes := sortedKeys(resps)
	sort.SliceStable(codes, func(i, j int) bool { return codes[i] < codes[j] })
	for _, status := range codes {
		r := resps.obj(status)
		if ref := r.str("$ref"); ref != "" {
			name := strings.TrimPrefix(ref, "#/components/responses/")
			fmt.Fprintf(b, "| %s | [%s](#response-%s) | [ErrorResponse](#schema-errorresponse) |\n", status, name, slug(name))
			continue
		}
		var bodies []string
		content := r.obj("content")
		for _, ct := range content.ks() {
			bodies = append(bodies, "`"+ct+"`: "+sr.typeOf(content.obj(ct).obj("schema")))
		}
		desc := inline(r.str("description"), true)
		if h := headerList(r); h != "" {
			desc += "; headers: " + h
		}
		fmt.Fprintf(b, "| %s | %s | %s |\n", status, desc, strings.Join(bodies, "<br>"))
	}
	b.WriteString("\n")
}

// headerList names a response's headers with their descriptions.
func headerList(r *omap) string {
	hs := r.obj("headers")
	var out []string
	for _, h := range hs.ks() {
		d := hs.obj(h).str("description")
		if d != "" {
			out = append(out, code(h)+" ("+inline(d, true)+")")
		} else {
			out = append(out, code(h))
		}
	}
	return strings.Join(out, ", ")
}

func titleCase(s string) string { return upperFirst(s) }

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// generatedNote is the comment every generated page starts with.
func generatedNote(from string) string {
	return "<!-- Generated by `go run ./docs/gen` (scripts/build-docs.sh) from " + from + ". Do not edit. -->\n\n"
}
