package gateway

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/triage-ml/triage/monitor"
	"github.com/triage-ml/triage/schemas"
)

type fakeDrift struct{}

func (fakeDrift) Report(model string, limit int) monitor.Report {
	w := schemas.DriftWindow{Model: schemas.ModelRef{Name: "support", Version: "v1"}, Topic: "q", Drift: true,
		Alerts: []string{"label_psi"}, Thresholds: []schemas.Threshold{}, LabelShares: []schemas.LabelShare{}}
	rep := monitor.Report{GeneratedAt: time.Unix(0, 0).UTC(), Streams: []monitor.StreamReport{}}
	if model == "" || model == "support" {
		ws := []schemas.DriftWindow{w, w, w}
		rep.Streams = append(rep.Streams, monitor.StreamReport{Model: "support", Topic: "q", Version: "v1", DriftEvents: 3, Windows: ws[:min(limit, 3)]})
	}
	return rep
}

func TestDriftRoute(t *testing.T) {
	models := map[string]Model{"support": newFakeModel(t, "support", "v1")}
	without := newTestServer(t, models, func(c *Config) { c.DisableAuth = true })
	resp, err := without.app.Test(httptest.NewRequest("GET", "/v1/drift", nil))
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("no monitor: %v %v, want 503", resp.StatusCode, err)
	}
	with := newTestServer(t, models, func(c *Config) { c.DisableAuth = true; c.Drift = fakeDrift{} })
	for _, tc := range []struct {
		url     string
		status  int
		windows int
	}{{"/v1/drift", 200, 3}, {"/v1/drift?model=support&limit=2", 200, 2}, {"/v1/drift?model=other", 200, -1},
		{"/v1/drift?limit=0", 400, 0}, {"/v1/drift?limit=x", 400, 0}} {
		resp, err := with.app.Test(httptest.NewRequest("GET", tc.url, nil))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.url, resp.StatusCode, body, tc.status)
			continue
		}
		if tc.status != 200 {
			continue
		}
		var rep monitor.Report
		if err := json.Unmarshal(body, &rep); err != nil {
			t.Fatal(err)
		}
		switch {
		case tc.windows < 0 && len(rep.Streams) != 0:
			t.Errorf("%s: %d streams, want none", tc.url, len(rep.Streams))
		case tc.windows >= 0 && (len(rep.Streams) != 1 || len(rep.Streams[0].Windows) != tc.windows):
			t.Errorf("%s: %s", tc.url, body)
		}
	}
}
