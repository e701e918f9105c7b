//go:build integration

package streamtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// realKafka is an Apache Kafka 4.x KRaft broker run by scripts/kafka-local.
type realKafka struct {
	script, dir, addr string
}

func (r *realKafka) Name() string      { return "apache-kafka" }
func (r *realKafka) Brokers() []string { return []string{r.addr} }

func (r *realKafka) run(t *testing.T, verb string) string {
	t.Helper()
	cmd := exec.Command("bash", r.script, verb, "--dir", r.dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kafka-local %s: %v", verb, err)
	}
	ls := lines(string(out))
	if len(ls) == 0 {
		return ""
	}
	return ls[len(ls)-1]
}

func (r *realKafka) RestartBroker(t *testing.T) {
	if addr := r.run(t, "restart"); addr != r.addr {
		t.Fatalf("broker came back on %q, want %q", addr, r.addr)
	}
}

func TestStreamingApacheKafka(t *testing.T) {
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	r := &realKafka{
		script: filepath.Join(filepath.Dir(strings.TrimSpace(string(root))), "scripts", "kafka-local"),
		dir:    t.TempDir(),
	}
	r.addr = r.run(t, "start")
	if r.addr == "" {
		t.Fatal("kafka-local start printed no bootstrap address")
	}
	t.Cleanup(func() { exec.Command("bash", r.script, "stop", "--dir", r.dir).Run() })
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("TRIAGE_CRASH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	runSuite(t, r, n)
}
