package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/triage-ml/triage/registry"
)

// fakeModelRegistry knows versions v1 and v2 of "support"; v2 does not load.
type fakeModelRegistry struct {
	champion string
	moves    []registry.Move
}

func (f *fakeModelRegistry) Versions(_ context.Context, name string) ([]registry.Version, error) {
	if name != "support" {
		return nil, fmt.Errorf("model %q: %w", name, registry.ErrNotFound)
	}
	return []registry.Version{{Model: name, Version: "v1", Hash: "sha256:aa"}, {Model: name, Version: "v2", Hash: "sha256:bb",
		Loads: []registry.LoadReport{{Instance: "pod-1", Error: "load model: truncated"}}}}, nil
}

func (f *fakeModelRegistry) Aliases(_ context.Context, name string) (map[string]string, error) {
	return map[string]string{registry.Champion: f.champion}, nil
}

func (f *fakeModelRegistry) Promote(_ context.Context, name, version, who, why string) (registry.Move, error) {
	switch {
	case name != "support" || (version != "v1" && version != "v2"):
		return registry.Move{}, fmt.Errorf("%s %s: %w", name, version, registry.ErrNotFound)
	case version == "v2":
		return registry.Move{}, fmt.Errorf("%s %s does not load: %w", name, version, registry.ErrInvalid)
	}
	mv := registry.Move{Model: name, Alias: registry.Champion, From: f.champion, To: version, Kind: registry.KindPromote, Who: who, Why: why, At: time.Now()}
	f.champion = version
	f.moves = append(f.moves, mv)
	return mv, nil
}

func (f *fakeModelRegistry) Rollback(_ context.Context, name, who, why string) (registry.Move, error) {
	return registry.Move{}, fmt.Errorf("%s: %w", name, registry.ErrNoRollback)
}

func TestPromoteAndRollbackRoutes(t *testing.T) {
	reg := &fakeModelRegistry{champion: "v1"}
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, func(c *Config) { c.Registry = reg })
	for _, c := range []struct {
		path, body string
		code       int
		errCode    string
	}{
		{"/v1/models/support/promote", `{"version":"v1","reason":"r"}`, 200, ""},
		{"/v1/models/support/promote", `{"version":"v9"}`, 404, codeNotFound},
		{"/v1/models/support/promote", `{"version":"v2"}`, 409, codeConflict},
		{"/v1/models/support/promote", `{}`, 400, codeInvalidRequest},
		{"/v1/models/support/promote", `{"version":"v1","bogus":1}`, 400, codeInvalidRequest},
		{"/v1/models/support/rollback", ``, 409, codeConflict},
	} {
		var body any
		if c.body != "" {
			body = c.body
		}
		code, _, b := ts.call(t, "POST", c.path, "admin", body)
		if code != c.code {
			t.Errorf("POST %s %s: %d %s, want %d", c.path, c.body, code, b, c.code)
			continue
		}
		if c.errCode != "" {
			if e := errBody(t, b); e.Code != c.errCode || e.Message == "" {
				t.Errorf("POST %s %s: %+v, want code %s with a reason", c.path, c.body, e, c.errCode)
			}
		}
	}
	if len(reg.moves) != 1 || reg.moves[0].Who != "api-key:admin" || reg.moves[0].Why != "r" {
		t.Errorf("moves %+v: want one, by the admin key, with its reason", reg.moves)
	}
	code, _, b := ts.call(t, "GET", "/v1/models", "admin", nil)
	if code != http.StatusOK || !strings.Contains(string(b), `"aliases":{"champion":"v1"}`) ||
		!strings.Contains(string(b), `"load_error":"pod-1: load model: truncated"`) {
		t.Errorf("GET /v1/models: %d %s", code, b)
	}
}
