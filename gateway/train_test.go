package gateway

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/trainer"
)

// fakeRegistry stands in for the model registry: Register copies the
// bundle into its own folder (as the real one does) and numbers versions.
type fakeRegistry struct {
	dir string

	mu         sync.Mutex
	registered []registration
	promoted   []string // name version who why
}

type registration struct {
	name, version, dir string
	lineage            trainer.Lineage
}

func (f *fakeRegistry) register(_ context.Context, name, dir string, l trainer.Lineage) (string, error) {
	if _, err := bundle.Load(dir); err != nil {
		return "", fmt.Errorf("fake registry: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v := fmt.Sprintf("v%d", len(f.registered)+1)
	dst := filepath.Join(f.dir, name, v)
	if err := os.CopyFS(dst, os.DirFS(dir)); err != nil {
		return "", err
	}
	f.registered = append(f.registered, registration{name: name, version: v, dir: dst, lineage: l})
	return v, nil
}

func (f *fakeRegistry) promote(_ context.Context, name, version, who, why string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.promoted = append(f.promoted, strings.Join([]string{name, version, who, why}, " "))
	return nil
}

func (f *fakeRegistry) snapshot() ([]registration, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]registration(nil), f.registered...), append([]string(nil), f.promoted...)
}

// testTrainer is an in-process trainer role with a fake registry.
type testTrainer struct {
	*trainer.JobService
	reg              *fakeRegistry
	workDir, uploads string
}

// newTestTrainer builds a JobService; run starts it until the test ends.
func newTestTrainer(t testing.TB, queue int, kafka *trainer.KafkaConfig) *testTrainer {
	t.Helper()
	tt := &testTrainer{reg: &fakeRegistry{dir: t.TempDir()}, workDir: t.TempDir(), uploads: filepath.Join(t.TempDir(), "uploads")}
	js, err := trainer.NewJobService(trainer.JobsConfig{Queue: queue, Threads: 2, WorkDir: tt.workDir, UploadDir: tt.uploads,
		Register: tt.reg.register, Promote: tt.reg.promote, Kafka: kafka})
	if err != nil {
		t.Fatal(err)
	}
	tt.JobService = js
	return tt
}

func (tt *testTrainer) run(t testing.TB) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tt.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("trainer Run: %v", err)
		}
	})
}

// withJobs gives a test server a running in-process trainer.
func withJobs(t testing.TB, c *Config) *testTrainer {
	tt := newTestTrainer(t, 4, nil)
	tt.run(t)
	c.Jobs = tt
	return tt
}

func TestTrainWithoutTrainer(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, func(c *Config) { c.DataRoot = t.TempDir() })
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/v1/train", `{"data_path":"a.csv","name":"x"}`},
		{"GET", "/v1/train/tj_0123456789abcdef", ""},
	} {
		var body any
		if tc.body != "" {
			body = tc.body
		}
		code, _, b := ts.call(t, tc.method, tc.path, "trainer", body)
		if e := errBody(t, b); code != 503 || !strings.Contains(e.Message, "no trainer role") {
			t.Errorf("%s %s without a trainer: %d %+v", tc.method, tc.path, code, e)
		}
	}
}

// TestTrainQueueFull: a full queue answers 503 with Retry-After, and the
// refused upload is not left behind.
func TestTrainQueueFull(t *testing.T) {
	tt := newTestTrainer(t, 1, nil) // not running: jobs stay queued
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, func(c *Config) { c.Jobs = tt })
	csv, err := os.ReadFile(syntheticCSV(t, t.TempDir(), "d.csv", 1))
	if err != nil {
		t.Fatal(err)
	}
	body, ct := multipartTrain(t, map[string]string{"name": "a"}, "a.csv", csv)
	code, b := ts.postMultipart(t, "trainer", body, ct)
	if code != 202 {
		t.Fatalf("first job: %d %s", code, b)
	}
	id := decodeJSON[TrainAccepted](t, b).ID
	body, ct = multipartTrain(t, map[string]string{"name": "b"}, "b.csv", csv)
	req := httptest.NewRequest("POST", "/v1/train", body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+ts.keys["trainer"])
	code, h, b := ts.do(t, req)
	if code != 503 || h.Get("Retry-After") != "30" || !strings.Contains(errBody(t, b).Message, "queue is full") {
		t.Errorf("second job: %d %q %s", code, h.Get("Retry-After"), b)
	}
	if ents, _ := os.ReadDir(tt.uploads); len(ents) != 1 || !strings.HasPrefix(ents[0].Name(), id) {
		t.Errorf("uploads: %v, want only the queued job's", ents)
	}
	code, _, b = ts.call(t, "GET", "/v1/train/"+id, "trainer", nil)
	if j := decodeJSON[TrainJob](t, b); code != 200 || j.Status != JobQueued || j.Source != "upload:a.csv" || j.Name != "a" {
		t.Errorf("queued job: %d %s", code, b)
	}
}

// TestTrainThroughKafka: the gateway and the trainer as two processes
// would run them: requests and statuses over Kafka, the upload in a
// folder both see.
func TestTrainThroughKafka(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	kc := trainer.KafkaConfig{Brokers: cluster.ListenAddrs(), ClientOpts: []kgo.Opt{kgo.FetchMaxWait(100 * time.Millisecond)}}
	tt := newTestTrainer(t, 2, &kc)
	tt.run(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client, err := trainer.NewKafkaJobs(ctx, trainer.KafkaJobsConfig{Kafka: kc, UploadDir: tt.uploads})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, func(c *Config) { c.Jobs = client })
	if ts.cfg.UploadDir != tt.uploads {
		t.Errorf("upload dir %q: the gateway should take the jobs client's %q", ts.cfg.UploadDir, tt.uploads)
	}
	csv, err := os.ReadFile(syntheticCSV(t, t.TempDir(), "d.csv", 4))
	if err != nil {
		t.Fatal(err)
	}
	body, ct := multipartTrain(t, map[string]string{"name": "support", "activate": "true", "max_epochs": "3"}, "tickets.csv", csv)
	code, b := ts.postMultipart(t, "trainer", body, ct)
	if code != 202 {
		t.Fatalf("train: %d %s", code, b)
	}
	j := ts.waitJob(t, decodeJSON[TrainAccepted](t, b).ID)
	if j.Status != JobSucceeded || !j.Activated || j.Version != "v1" || j.Source != "upload:tickets.csv" || j.Metrics == nil {
		t.Fatalf("job: %+v", j)
	}
	if regs, proms := tt.reg.snapshot(); len(regs) != 1 || len(proms) != 1 {
		t.Errorf("registry: %+v %v", regs, proms)
	}
	if ents, _ := os.ReadDir(tt.uploads); len(ents) != 0 {
		t.Errorf("upload left behind: %v", ents)
	}
}
