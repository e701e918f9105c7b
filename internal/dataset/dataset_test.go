package dataset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

var opts = Options{TextColumn: "text", LabelColumn: "label"}

func TestLoadCSV(t *testing.T) {
	p := write(t, "d.csv", "\xef\xbb\xbfid,text,label\n1,\"hello, world\",greet\n2,\"multi\nline\",other\n")
	ds, err := Load(p, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Examples) != 2 || ds.Examples[0].Text != "hello, world" || ds.Examples[1].Label != "other" {
		t.Fatalf("got %+v", ds.Examples)
	}
	if ds.Examples[0].Line != 2 || ds.Examples[1].Line != 3 {
		t.Errorf("lines %d %d, want 2 3", ds.Examples[0].Line, ds.Examples[1].Line)
	}
	if len(ds.SHA256) != 64 {
		t.Errorf("sha256 %q", ds.SHA256)
	}
}

func TestLoadJSONL(t *testing.T) {
	p := write(t, "d.jsonl", `{"text":"a b","label":"x"}`+"\n\n"+`{"text":"c","label":1}`+"\n")
	ds, err := Load(p, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds.Examples) != 2 || ds.Examples[1].Label != "1" || ds.Examples[1].Line != 3 {
		t.Fatalf("got %+v", ds.Examples)
	}
}

func TestLoadErrorsNameFileAndLine(t *testing.T) {
	cases := []struct {
		name, file, content, want string
	}{
		{"ragged", "r.csv", "text,label\na,x\nb,y,extra\n", "r.csv:3: row has 3 fields, header has 2"},
		{"missing column", "m.csv", "body,label\na,x\n", `r.csv:1: no column "text"`},
		{"empty file", "e.csv", "", "no examples"},
		{"header only", "h.csv", "text,label\n", "no examples"},
		{"empty text", "t.csv", "text,label\n   ,x\n", "t.csv:2: empty text"},
		{"empty label", "l.csv", "text,label\nhello,\n", "l.csv:2: empty label"},
		{"bad quote", "q.csv", "text,label\n\"unterminated,x\n", "q.csv:"},
		{"bad json", "b.jsonl", "{\"text\":\"a\",\"label\":\"x\"}\n{oops\n", "b.jsonl:2: invalid JSON"},
		{"json missing field", "f.jsonl", "{\"text\":\"a\"}\n", `f.jsonl:1: missing field "label"`},
		{"json wrong type", "w.jsonl", "{\"text\":[1],\"label\":\"x\"}\n", `w.jsonl:1: field "text" is []interface {}`},
		{"unknown format", "x.parquet", "x", "unknown format"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := write(t, c.file, c.content)
			_, err := Load(p, opts)
			if err == nil {
				t.Fatal("no error")
			}
			want := strings.Replace(c.want, "r.csv", c.file, 1)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
			if !strings.Contains(err.Error(), c.file) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
	if _, err := Load(write(t, "e.csv", ""), opts); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty file error %v is not ErrEmpty", err)
	}
}

func TestStratifiedSplit(t *testing.T) {
	var exs []Example
	for i := range 100 {
		exs = append(exs, Example{Text: fmt.Sprint("a", i), Label: "a"})
	}
	for i := range 30 {
		exs = append(exs, Example{Text: fmt.Sprint("b", i), Label: "b"})
	}
	exs = append(exs, Example{Text: "lonely", Label: "c"})
	tr1, va1, err := StratifiedSplit(exs, 0.1, 7)
	if err != nil {
		t.Fatal(err)
	}
	count := func(xs []Example, l string) (n int) {
		for _, x := range xs {
			if x.Label == l {
				n++
			}
		}
		return n
	}
	if count(va1, "a") != 10 || count(va1, "b") != 3 || count(va1, "c") != 0 || len(tr1)+len(va1) != len(exs) {
		t.Errorf("split sizes: val a=%d b=%d c=%d", count(va1, "a"), count(va1, "b"), count(va1, "c"))
	}
	_, va2, _ := StratifiedSplit(exs, 0.1, 7)
	_, va3, _ := StratifiedSplit(exs, 0.1, 8)
	key := func(xs []Example) string {
		var s []string
		for _, x := range xs {
			s = append(s, x.Text)
		}
		return strings.Join(s, ",")
	}
	if key(va1) != key(va2) {
		t.Error("same seed gave different splits")
	}
	if key(va1) == key(va3) {
		t.Error("different seeds gave the same split")
	}
	if _, _, err := StratifiedSplit(exs, 1.5, 1); err == nil {
		t.Error("fraction 1.5 accepted")
	}
}
