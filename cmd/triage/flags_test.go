package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestFlagsCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"flags"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var docs []FlagDoc
	if err := json.Unmarshal(out.Bytes(), &docs); err != nil {
		t.Fatal(err)
	}
	find := func(cmd, name string) (FlagDoc, bool) {
		for _, d := range docs {
			if d.Command == cmd && d.Name == name {
				return d, true
			}
		}
		return FlagDoc{}, false
	}
	for _, c := range []struct{ cmd, name, env string }{
		{"run", "brokers", "TRIAGE_BROKERS"}, {"run", "monitor-window-count", "TRIAGE_MONITOR_WINDOW_COUNT"},
		{"run", "elasticsearch-url", "TRIAGE_ELASTICSEARCH_URL"}, {"models promote", "registry", "TRIAGE_REGISTRY"},
		{"dev", "data-dir", ""}, // exempt: TRIAGE_DATA_DIR names the datasets folder
	} {
		d, ok := find(c.cmd, c.name)
		if !ok || d.Env != c.env || d.Usage == "" {
			t.Errorf("triage %s --%s: %+v (found %v), want env %q", c.cmd, c.name, d, ok, c.env)
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"flags", "--format", "markdown"}, &out, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "## triage run\n") || !strings.Contains(out.String(), "| `--brokers` | `TRIAGE_BROKERS` |") {
		t.Errorf("markdown reference:\n%.600s", out.String())
	}
	if err := run(context.Background(), []string{"flags", "--format", "yaml"}, &out, &bytes.Buffer{}); err == nil {
		t.Error("--format yaml accepted")
	}
}
