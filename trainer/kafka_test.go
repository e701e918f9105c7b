package trainer

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestJobsThroughKafka: a KafkaJobs client (the gateway's process) and a
// JobService (the trainer's) meet only on Kafka. Jobs submitted through it
// train, register and promote, and their statuses come back, also to a
// client started after they finished.
func TestJobsThroughKafka(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	kc := KafkaConfig{Brokers: cluster.ListenAddrs(), ClientOpts: []kgo.Opt{kgo.FetchMaxWait(100 * time.Millisecond)}}
	ts := newTestService(t, func(c *JobsConfig) { c.Kafka = &kc })
	ts.start(t)
	if !ts.Ready() {
		t.Fatal("trainer not ready")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client, err := NewKafkaJobs(ctx, KafkaJobsConfig{Kafka: kc, UploadDir: ts.upld})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	// The status topic is compacted: it keeps each job's latest status.
	raw := newClient(t, kc)
	adm := kadm.NewClient(raw)
	rcs, err := adm.DescribeTopicConfigs(ctx, DefaultStatusTopic)
	if err != nil {
		t.Fatal(err)
	}
	if err := rcs[0].Err; err != nil || !hasConfig(rcs[0], "cleanup.policy", "compact") {
		t.Errorf("status topic configs: %+v %v", rcs[0].Configs, err)
	}

	data := synthetic(t, "tickets.csv", "text", "label", false)
	upload := filepath.Join(ts.upld, "tj_upload.csv")
	csv, _ := os.ReadFile(data)
	os.WriteFile(upload, csv, 0o644)
	seed := uint64(7)
	reqs := []JobRequest{
		{Name: "support", DataPath: data, Source: "tickets.csv", Activate: true, Seed: &seed, MaxEpochs: 3, RequestedBy: "api-key:ops"},
		{Name: "reviews", DataPath: upload, Source: "upload:t.csv", Upload: true, MaxEpochs: 2},
	}
	var ids []string
	for _, r := range reqs {
		st, err := client.Submit(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != JobQueued || st.Name != r.Name || st.Source != r.Source {
			t.Errorf("submitted: %+v", st)
		}
		// Get answers at once, before the trainer has said anything.
		if got, err := client.Get(ctx, st.ID); err != nil || got.Status == "" {
			t.Errorf("get right after submit: %+v %v", got, err)
		}
		ids = append(ids, st.ID)
	}
	a := waitStatus(t, client, ids[0], finished)
	if a.Status != JobSucceeded || a.Version != "v1" && a.Version != "v2" || !a.Activated || a.Metrics == nil ||
		a.Metrics.Validation.Accuracy < 0.9 || a.StartedAt == nil || a.HyperParams["loss"] != LossLogistic {
		t.Fatalf("job a: %+v", a)
	}
	b := waitStatus(t, client, ids[1], finished)
	if b.Status != JobSucceeded || b.Activated || b.Source != "upload:t.csv" {
		t.Fatalf("job b: %+v", b)
	}
	if _, err := os.Stat(upload); !os.IsNotExist(err) {
		t.Errorf("upload kept: %v", err)
	}
	nreg, nprom := ts.reg.counts()
	if nreg != 2 || nprom != 1 || !strings.HasPrefix(ts.reg.promoted[0], "support "+a.Version+" api-key:ops training job "+ids[0]) {
		t.Errorf("registry: %d registered, promoted %v", nreg, ts.reg.promoted)
	}
	// The trainer's own record agrees.
	if st, err := ts.Get(ctx, ids[0]); err != nil || st.Version != a.Version {
		t.Errorf("trainer's status: %+v %v", st, err)
	}

	// A request the trainer refuses comes back failed, saying why.
	bad, _ := json.Marshal(JobRequest{ID: "tj_bad", Name: "no/slash", DataPath: data, Source: "tickets.csv"})
	if err := raw.ProduceSync(ctx, &kgo.Record{Topic: DefaultRequestsTopic, Key: []byte("tj_bad"), Value: bad},
		&kgo.Record{Topic: DefaultRequestsTopic, Value: []byte("not json")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if st := waitStatus(t, client, "tj_bad", finished); st.Status != JobFailed || !strings.Contains(st.Error, `name "no/slash"`) {
		t.Errorf("refused job: %+v", st)
	}
	// The client refuses what the trainer would.
	if _, err := client.Submit(ctx, JobRequest{Name: "x", DataPath: "/etc/passwd", Upload: true}); !errors.Is(err, ErrInvalidJob) {
		t.Errorf("upload outside the shared folder: %v", err)
	}

	// A client started now reads every job's latest status from the start.
	late, err := NewKafkaJobs(ctx, KafkaJobsConfig{Kafka: kc, UploadDir: ts.upld})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	deadline := time.Now().Add(30 * time.Second)
	for !late.Ready() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, id := range ids {
		if st, err := late.Get(ctx, id); err != nil || st.Status != JobSucceeded {
			t.Errorf("late client, job %s: %+v %v", id, st, err)
		}
	}
	if _, err := late.Get(ctx, "tj_never"); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("unknown job: %v", err)
	}

	// Shutdown: Run returns cleanly and leaves the group.
	ts.stop()
	if ts.runErr != nil {
		t.Errorf("Run: %v", ts.runErr)
	}
}

func newClient(t *testing.T, kc KafkaConfig) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func hasConfig(rc kadm.ResourceConfig, key, value string) bool {
	for _, c := range rc.Configs {
		if c.Key == key && c.Value != nil && strings.Contains(*c.Value, value) {
			return true
		}
	}
	return false
}

// TestJobsKafkaQueuedAtShutdown: a job taken from Kafka but not started
// when the trainer stops is reported failed on the status topic.
func TestJobsKafkaQueuedAtShutdown(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	kc := KafkaConfig{Brokers: cluster.ListenAddrs(), ClientOpts: []kgo.Opt{kgo.FetchMaxWait(100 * time.Millisecond)}}
	emb := blockingEmbedder{started: make(chan struct{}, 1)}
	ts := newTestService(t, func(c *JobsConfig) {
		c.Kafka, c.Encoder = &kc, &EncoderSource{Embedder: emb}
	})
	ts.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := NewKafkaJobs(ctx, KafkaJobsConfig{Kafka: kc})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	data := synthetic(t, "d.csv", "text", "label", false)
	a, err := client.Submit(ctx, JobRequest{Name: "a", DataPath: data})
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.Submit(ctx, JobRequest{Name: "b", DataPath: data})
	if err != nil {
		t.Fatal(err)
	}
	<-emb.started
	// Wait until the trainer itself holds b in its queue: the client writes
	// b's queued status before the request, so the topic alone could show
	// "queued" for a request no trainer has read yet (which correctly stays
	// in the topic for the next trainer, and is not what this test is about).
	waitStatus(t, ts.JobService, b.ID, func(st JobStatus) bool { return st.Status == JobQueued })
	ts.stop()
	if ts.runErr != nil {
		t.Fatalf("Run: %v", ts.runErr)
	}
	for id, want := range map[string]string{a.ID: "before the job finished", b.ID: "before the job started"} {
		if st := waitStatus(t, client, id, finished); st.Status != JobFailed || !strings.Contains(st.Error, want) {
			t.Errorf("job %s: %+v, want %q", id, st, want)
		}
	}
}

// TestKafkaJobsBeforeTrainer: a job submitted while no trainer runs is
// known to every client at once, and runs when a trainer starts.
func TestKafkaJobsBeforeTrainer(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	kc := KafkaConfig{Brokers: cluster.ListenAddrs(), ClientOpts: []kgo.Opt{kgo.FetchMaxWait(100 * time.Millisecond)}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var clients [2]*KafkaJobs
	for i := range clients {
		c, err := NewKafkaJobs(ctx, KafkaJobsConfig{Kafka: kc})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	st, err := clients[0].Submit(ctx, JobRequest{Name: "m", DataPath: synthetic(t, "d.csv", "text", "label", false), MaxEpochs: 2})
	if err != nil {
		t.Fatal(err)
	}
	if got := waitStatus(t, clients[1], st.ID, func(JobStatus) bool { return true }); got.Status != JobQueued {
		t.Errorf("other client: %+v", got)
	}
	ts := newTestService(t, func(c *JobsConfig) { c.Kafka = &kc })
	ts.start(t)
	for _, c := range clients {
		if got := waitStatus(t, c, st.ID, finished); got.Status != JobSucceeded || got.Version != "v1" {
			t.Errorf("job: %+v", got)
		}
	}
}
