package streamtest

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// kfakeBackend is the embedded broker `triage dev` uses, persisted to disk
// so it can be restarted with its data.
type kfakeBackend struct {
	dir     string
	port    int
	cluster *kfake.Cluster
}

func (k *kfakeBackend) Name() string      { return "kfake" }
func (k *kfakeBackend) Brokers() []string { return []string{"127.0.0.1:" + strconv.Itoa(k.port)} }

func (k *kfakeBackend) start(t *testing.T) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(k.port), kfake.DataDir(k.dir), kfake.DefaultNumPartitions(3))
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	k.cluster = c
}

func (k *kfakeBackend) RestartBroker(t *testing.T) {
	k.cluster.Close()
	k.start(t)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestStreamingKfake(t *testing.T) {
	k := &kfakeBackend{dir: filepath.Join(t.TempDir(), "kafka"), port: freePort(t)}
	k.start(t)
	t.Cleanup(func() { k.cluster.Close() })
	n := 100000
	if v, err := strconv.Atoi(os.Getenv("TRIAGE_CRASH_MESSAGES")); err == nil && v > 0 {
		n = v
	}
	runSuite(t, k, n)
}
