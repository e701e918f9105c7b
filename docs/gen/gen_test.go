package main

import (
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/triage-ml/triage/schemas"
)

// The REST page has a section for every operation of the OpenAPI document
// and for every component schema, and every link inside it resolves.
func TestRESTCoversEveryRoute(t *testing.T) {
	raw, err := gatewayOpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	page, err := renderREST(raw)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]struct{ OperationID string } `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Paths) == 0 {
		t.Fatal("the OpenAPI document has no paths")
	}
	routes := 0
	for path, item := range doc.Paths {
		for method, op := range item {
			if !slices.Contains(httpMethods, method) {
				continue
			}
			routes++
			heading := "### `" + strings.ToUpper(method) + " " + path + "` {#op-" + slug(op.OperationID) + "}"
			if !strings.Contains(page, heading+"\n") {
				t.Errorf("REST page lacks %s %s (want heading %q)", method, path, heading)
			}
			if !strings.Contains(page, "| "+strings.ToUpper(method)+" | [`"+path+"`](#op-") {
				t.Errorf("REST page's route table lacks %s %s", method, path)
			}
		}
	}
	for name := range doc.Components.Schemas {
		if !strings.Contains(page, "### "+name+" {#schema-"+slug(name)+"}\n") {
			t.Errorf("REST page lacks schema %s", name)
		}
	}
	checkLocalAnchors(t, page)
	t.Logf("%d routes, %d schemas", routes, len(doc.Components.Schemas))
}

// The configuration page has a section for every command `triage flags`
// lists (JSON and markdown alike) and a row for every flag of it.
func TestConfigurationCoversEveryCommand(t *testing.T) {
	bin := triageBinary(t)
	raw, err := triageFlags(bin)
	if err != nil {
		t.Fatal(err)
	}
	page, err := renderConfig(raw)
	if err != nil {
		t.Fatal(err)
	}
	docs, cmds, err := parseFlags(raw)
	if err != nil {
		t.Fatal(err)
	}
	md, err := exec.Command(bin, "flags", "--format", "markdown").Output()
	if err != nil {
		t.Fatalf("triage flags --format markdown: %v", err)
	}
	var mdCmds []string
	for _, m := range regexp.MustCompile(`(?m)^## triage (.+)$`).FindAllStringSubmatch(string(md), -1) {
		mdCmds = append(mdCmds, m[1])
	}
	if !slices.Equal(mdCmds, cmds) {
		t.Errorf("commands of triage flags: JSON %v, markdown %v", cmds, mdCmds)
	}
	for _, c := range []string{"run", "dev", "consumer", "gateway", "models rollback", "apikey add", "produce", "tail"} {
		if !slices.Contains(cmds, c) {
			t.Errorf("triage flags lists no command %q", c)
		}
	}
	sections := map[string]string{}
	parts := strings.Split(page, "\n## triage ")
	for _, p := range parts[1:] {
		name, _, _ := strings.Cut(p, " {#")
		sections[name] = p
	}
	for _, c := range cmds {
		sec, ok := sections[c]
		if !ok {
			t.Errorf("configuration page lacks command %q", c)
			continue
		}
		if !strings.HasPrefix(sec, c+" {#"+commandAnchor(c)+"}\n") {
			t.Errorf("command %q: heading without its anchor", c)
		}
		if !strings.Contains(page, "[`triage "+c+"`](#"+commandAnchor(c)+")") {
			t.Errorf("command %q: missing from the command index", c)
		}
	}
	for _, d := range docs {
		env := "—"
		if d.Env != "" {
			env = "`" + d.Env + "`"
		}
		if row := "| `--" + d.Name + "` | " + env + " | "; !strings.Contains(sections[d.Command], row) {
			t.Errorf("command %q: no row for --%s (want %q)", d.Command, d.Name, row)
		}
	}
	if len(sections) != len(cmds) {
		t.Errorf("configuration page has %d command sections, triage flags %d commands", len(sections), len(cmds))
	}
	checkLocalAnchors(t, page)
	t.Logf("%d commands, %d flags", len(cmds), len(docs))
}

// The topics page renders every schema file: its section, every top-level
// property, and the raw schema.
func TestTopicsCoverEverySchema(t *testing.T) {
	files := schemas.Files()
	page, err := renderTopics(files)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range schemas.Kinds() {
		raw, ok := files[k.File()]
		if !ok {
			t.Fatalf("schemas.Files() lacks %s", k.File())
		}
		if !strings.Contains(page, "{#schema-"+string(k)+"}\n") {
			t.Errorf("topics page lacks schema %s", k)
		}
		if !strings.Contains(page, `??? note "Raw schema: `+k.File()+`"`) {
			t.Errorf("topics page lacks the raw %s schema", k)
		}
		var s struct {
			Properties map[string]any `json:"properties"`
		}
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		for name := range s.Properties {
			if !strings.Contains(page, "| `"+name+"` | ") {
				t.Errorf("schema %s: no row for property %s", k, name)
			}
		}
	}
	if len(files) != len(schemas.Kinds()) {
		t.Errorf("schemas.Files() has %d files, schemas.Kinds() %d kinds: render the new one", len(files), len(schemas.Kinds()))
	}
	for _, tp := range topicList() {
		if !strings.Contains(page, "| `"+tp.name+"` | ") {
			t.Errorf("topics page lacks topic %s", tp.name)
		}
	}
	checkLocalAnchors(t, page)
}

// Every page under docs/ is in mkdocs.yml's nav, and every nav entry is a
// page there or a generated one (mkdocs build --strict checks the same;
// this runs without Python).
func TestSiteNavListsEveryPage(t *testing.T) {
	root := filepath.Join("..", "..")
	cfg, err := os.ReadFile(filepath.Join(root, "mkdocs.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var nav []string
	for _, m := range regexp.MustCompile(`(?m)^\s+- [^:\n]+: (\S+\.md)\s*$`).FindAllStringSubmatch(string(cfg), -1) {
		nav = append(nav, m[1])
	}
	generated := map[string]bool{"reference/" + restPage: true, "reference/" + topicsPage: true, "reference/" + configPage: true}
	for g := range generated {
		if !slices.Contains(nav, g) {
			t.Errorf("mkdocs.yml nav lacks the generated page %s", g)
		}
	}
	for _, n := range nav {
		if generated[n] {
			continue
		}
		if _, err := os.Stat(filepath.Join(root, "docs", n)); err != nil {
			t.Errorf("mkdocs.yml nav: %v", err)
		}
	}
	docs := filepath.Join(root, "docs")
	err = filepath.WalkDir(docs, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(docs, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() && (rel == "gen" || rel == "reference") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(rel, ".md") && !slices.Contains(nav, rel) {
			t.Errorf("docs/%s is not in mkdocs.yml's nav", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestInlineEscaping(t *testing.T) {
	for in, want := range map[string]string{
		"plain text":                  "plain text",
		"a <b> & c":                   "a &lt;b&gt; &amp; c",
		"list|show":                   `list\|show`,
		"keep `a|b <c>` code":         "keep `a\\|b <c>` code",
		"TRIAGE_DATA_DIR *x* [y]":     `TRIAGE\_DATA\_DIR \*x\* \[y\]`,
		"two\nlines":                  "two lines",
		"unbalanced ` tick <x>":       "unbalanced ` tick &lt;x&gt;",
		"triage-drift-* `--flag` end": "triage-drift-\\* `--flag` end",
	} {
		if got := inline(in, true); got != want {
			t.Errorf("inline(%q) = %q, want %q", in, got, want)
		}
	}
}

// checkLocalAnchors fails for a same-page link (#id) without its {#id}
// heading or id="..." element.
func checkLocalAnchors(t *testing.T, page string) {
	t.Helper()
	ids := map[string]bool{}
	for _, m := range regexp.MustCompile(`\{#([^}\s]+)\}|id="([^"]+)"`).FindAllStringSubmatch(page, -1) {
		ids[m[1]+m[2]] = true
	}
	for _, m := range regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(page, -1) {
		if !ids[m[1]] {
			t.Errorf("link to #%s, which the page does not define", m[1])
		}
	}
}

// triageBinary builds cmd/triage for the test.
func triageBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "triage")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/triage-ml/triage/cmd/triage").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/triage: %v\n%s", err, out)
	}
	return bin
}
