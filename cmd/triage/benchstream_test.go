package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triage-ml/triage/bench"
)

// TRIAGE_CPU_PROFILE (or --cpu-profile) must profile any subcommand, bench
// stream included, which never builds a logger.
func TestBenchStreamCPUProfileFromEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.pprof")
	t.Setenv("TRIAGE_CPU_PROFILE", path)
	err := run(context.Background(), []string{"bench", "stream", "--python", ""}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--model and --data are required") {
		t.Fatalf("err = %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		t.Fatalf("profile not written: %v", err)
	}
}

func TestBenchStreamReport(t *testing.T) {
	var b bytes.Buffer
	writeStreamReport(&b, bench.StreamResult{
		Runs:    []bench.StreamRun{{Rep: 1, Name: "b) x", Rate: 100, CPUPerMsg: 10, Profile: "p/batched-1.pprof"}},
		Summary: []bench.StreamSummary{{Name: "b) x", Procs: 1, Rate: bench.Stat{Median: 100, Min: 90, Max: 110}}},
		Ratios:  []bench.Ratio{{Name: "msgs/s (b) ÷ Python×1", Stat: bench.Stat{Median: 3.5, Min: 3, Max: 4}, Goal: "≥ 3", Met: true}},
	}, 1000)
	for _, want := range []string{"| b) x | 1 | 100 (90–110) |", "| msgs/s (b) ÷ Python×1 | 3.50 | 3.00–4.00 | ≥ 3 | yes |", "p/batched-1.pprof", "† throughput below the 1000 msgs/s"} {
		if !strings.Contains(b.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, b.String())
		}
	}
}
