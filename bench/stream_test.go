package bench

import (
	"math"
	"os"
	"strings"
	"testing"
)

func TestBenchStreamStatTicks(t *testing.T) {
	// The command name may hold spaces and ")": fields count from the last ")".
	line := "1234 (py thon) x)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100 0 0\n"
	if got := statTicks([]byte(line)); got != 300 {
		t.Fatalf("statTicks = %v, want 300 (utime 250 + stime 50)", got)
	}
	if got := statTicks([]byte("garbage")); got != 0 {
		t.Fatalf("statTicks(garbage) = %v", got)
	}
	// This process has used some CPU by now.
	if cpuSeconds([]int{os.Getpid()}) < 0 {
		t.Fatal("negative CPU")
	}
}

func TestBenchStreamStatOf(t *testing.T) {
	if s := statOf([]float64{3, 1, 2}); s != (Stat{Median: 2, Min: 1, Max: 3}) {
		t.Fatalf("odd: %+v", s)
	}
	if s := statOf([]float64{4, 1, 2, 3}); s != (Stat{Median: 2.5, Min: 1, Max: 4}) {
		t.Fatalf("even: %+v", s)
	}
}

func TestBenchStreamRatios(t *testing.T) {
	sum := []StreamSummary{
		{ID: runPassthrough, Rate: Stat{100, 90, 110}},
		{ID: runBatched, Rate: Stat{90, 80, 100}, CPU: Stat{10, 9, 11}},
		{ID: runPython1, Rate: Stat{20, 18, 22}, CPU: Stat{40, 38, 42}},
		{ID: runPython2, Rate: Stat{50, 45, 55}, CPU: Stat{45, 44, 46}},
	}
	got := map[string]Ratio{}
	for _, r := range streamRatios(sum) {
		got[r.Name] = r
	}
	cpu := got["CPU/msg (b) ÷ Python×1"]
	if cpu.Median != 0.25 || !cpu.Met || math.Abs(cpu.Min-9.0/42) > 1e-9 || math.Abs(cpu.Max-11.0/38) > 1e-9 {
		t.Fatalf("cpu ratio %+v", cpu)
	}
	if r := got["msgs/s (b) ÷ Python×1"]; r.Median != 4.5 || !r.Met {
		t.Fatalf("python1 ratio %+v", r)
	}
	if r := got["msgs/s (b) ÷ Python×2"]; r.Median != 1.8 || !r.Met {
		t.Fatalf("python2 ratio %+v", r)
	}
	if r := got["msgs/s (b) ÷ passthrough (a)"]; r.Median != 0.9 || !r.Met {
		t.Fatalf("passthrough ratio %+v", r)
	}
	if len(streamRatios(sum[:1])) != 0 {
		t.Fatal("no ratios without run (b)")
	}
}

func TestBenchStreamChildEnvDropsProfile(t *testing.T) {
	t.Setenv("TRIAGE_CPU_PROFILE", "/tmp/x.pprof")
	t.Setenv("TRIAGE_CPUPROFILE", "/tmp/y.pprof")
	t.Setenv("TRIAGE_LOG_LEVEL", "warn")
	env := strings.Join(childEnv(), "\n")
	if strings.Contains(env, "PROFILE") {
		t.Fatalf("profile variable passed to consumers: %s", env)
	}
	if !strings.Contains(env, "TRIAGE_LOG_LEVEL=warn") {
		t.Fatal("other variables must pass")
	}
}
