package trainer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/triage-ml/triage/bundle"
)

func TestTrainProgress(t *testing.T) {
	data := synthetic(t, "p.csv", "text", "label", false)
	var got []Progress
	_, err := Train(context.Background(), Options{DataPath: data, OutDir: filepath.Join(t.TempDir(), "m"),
		LearningRates: []float64{0.1, 0.2}, L2s: []float64{0}, MaxEpochs: 3, Workers: 2,
		Progress: func(p Progress) { got = append(got, p) }})
	if err != nil {
		t.Fatal(err)
	}
	var stages []string
	for i, p := range got {
		stages = append(stages, p.Stage)
		if i > 0 && p.Fraction < got[i-1].Fraction || p.Fraction < 0 || p.Fraction > 1 {
			t.Errorf("fraction went %v -> %v", got[max(i-1, 0)].Fraction, p.Fraction)
		}
	}
	want := []string{StageLoading, StageFeaturising, StageSearching, StageSearching + " (trial 1/2)",
		StageSearching + " (trial 2/2)", StageExporting, StageWritten}
	if !slices.Equal(stages, want) {
		t.Errorf("stages %q, want %q", stages, want)
	}
	if last := got[len(got)-1]; last.Fraction != 1 || got[0].Fraction != 0 {
		t.Errorf("first %+v, last %+v", got[0], last)
	}
}

// fakeRegistry records registrations and promotions; the hooks, when set,
// run first and may fail or block.
type fakeRegistry struct {
	mu         sync.Mutex
	registered []Lineage
	promoted   []string
	onRegister func(ctx context.Context, dir string) error
	onPromote  func() error
}

func (f *fakeRegistry) register(ctx context.Context, name, dir string, l Lineage) (string, error) {
	if _, err := bundle.Load(dir); err != nil {
		return "", fmt.Errorf("fake registry: %w", err)
	}
	if f.onRegister != nil {
		if err := f.onRegister(ctx, dir); err != nil {
			return "", err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registered = append(f.registered, l)
	return fmt.Sprintf("v%d", len(f.registered)), nil
}

func (f *fakeRegistry) promote(_ context.Context, name, version, who, why string) error {
	if f.onPromote != nil {
		if err := f.onPromote(); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.promoted = append(f.promoted, strings.Join([]string{name, version, who, why}, " "))
	return nil
}

func (f *fakeRegistry) counts() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.registered), len(f.promoted)
}

type testService struct {
	*JobService
	reg        *fakeRegistry
	prom       *prometheus.Registry
	cancel     context.CancelFunc
	done       chan error
	runErr     error
	work, upld string
}

func newTestService(t *testing.T, edit func(*JobsConfig)) *testService {
	t.Helper()
	ts := &testService{reg: &fakeRegistry{}, prom: prometheus.NewRegistry(), work: t.TempDir(), upld: t.TempDir()}
	cfg := JobsConfig{Threads: 2, WorkDir: ts.work, UploadDir: ts.upld, Register: ts.reg.register, Promote: ts.reg.promote,
		Registerer: ts.prom}
	if edit != nil {
		edit(&cfg)
	}
	s, err := NewJobService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.JobService = s
	return ts
}

func (ts *testService) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ts.cancel, ts.done = cancel, make(chan error, 1)
	go func() { ts.done <- ts.Run(ctx) }()
	t.Cleanup(ts.stop)
	deadline := time.Now().Add(10 * time.Second)
	for !ts.Ready() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends Run and waits for it; later calls do nothing.
func (ts *testService) stop() {
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	ts.runErr = <-ts.done
	ts.cancel = nil
}

func waitStatus(t *testing.T, j Jobs, id string, done func(JobStatus) bool) JobStatus {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st, err := j.Get(context.Background(), id)
		if err != nil && !errors.Is(err, ErrJobNotFound) {
			t.Fatal(err)
		}
		if err == nil && done(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: still %+v", id, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func finished(st JobStatus) bool { return st.Done() }

func TestJobSucceeds(t *testing.T) {
	ts := newTestService(t, nil)
	ts.start(t)
	data := synthetic(t, "tickets.csv", "text", "label", false)
	seed := uint64(5)
	var mu sync.Mutex
	stages := map[string]bool{}
	ts.reg.onRegister = func(ctx context.Context, dir string) error {
		got, _ := ts.Get(context.Background(), "tj_"+strings.TrimPrefix(filepath.Base(dir), "support-tj_"))
		mu.Lock()
		stages[got.Stage] = true
		mu.Unlock()
		return nil
	}
	st, err := ts.Submit(context.Background(), JobRequest{Name: "support", DataPath: data, Source: "tickets.csv",
		Activate: true, Seed: &seed, MaxEpochs: 3, RequestedBy: "api-key:ops"})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != JobQueued || !strings.HasPrefix(st.ID, "tj_") || st.CreatedAt.IsZero() {
		t.Errorf("submitted: %+v", st)
	}
	j := waitStatus(t, ts, st.ID, finished)
	if j.Status != JobSucceeded || j.Version != "v1" || !j.Activated || j.Progress != 1 || j.Stage != StageDone ||
		j.Metrics == nil || j.Metrics.Validation.Accuracy < 0.9 || j.HyperParams["loss"] != LossLogistic || j.Error != "" {
		t.Fatalf("job: %+v", j)
	}
	if j.BundleDir != filepath.Join(ts.work, "support-"+st.ID) || j.StartedAt == nil || j.FinishedAt == nil {
		t.Errorf("dirs and times: %+v", j)
	}
	if _, err := os.Stat(j.BundleDir); !os.IsNotExist(err) {
		t.Errorf("training dir kept after registration: %v", err)
	}
	if !stages[StageRegistering] {
		t.Errorf("stage while registering: %v", stages)
	}
	l := ts.reg.registered[0]
	if l.JobID != st.ID || l.Source != "tickets.csv" || l.DataPath != data || len(l.DataSHA256) != 64 || l.Seed != 5 ||
		l.Rows != 300 || l.Metrics["val_accuracy"] != j.Metrics.Validation.Accuracy || l.RequestedBy != "api-key:ops" || l.BundleVersion == "" {
		t.Errorf("lineage: %+v", l)
	}
	if rl := l.Registry(); rl.DataSHA256 != l.DataSHA256 || rl.Metrics["val_macro_f1"] == 0 {
		t.Errorf("registry lineage: %+v", rl)
	}
	if want := "support v1 api-key:ops training job " + st.ID; ts.reg.promoted[0] != want {
		t.Errorf("promoted %q, want %q", ts.reg.promoted[0], want)
	}
	if n := metricValue(t, ts.metrics.jobs.WithLabelValues(JobSucceeded)); n != 1 {
		t.Errorf("succeeded jobs metric %v", n)
	}
	series := map[string]int{}
	mfs, err := ts.prom.Gather()
	for _, mf := range mfs {
		series[mf.GetName()] = len(mf.GetMetric())
	}
	if err != nil || series["triage_trainer_jobs_total"] != 2 || series["triage_trainer_queue_jobs"] != 1 {
		t.Errorf("metric series: %v %v", series, err)
	}
	if _, err := ts.Get(context.Background(), "tj_nope"); !errors.Is(err, ErrJobNotFound) {
		t.Errorf("unknown job: %v", err)
	}
}

func TestJobFailures(t *testing.T) {
	ts := newTestService(t, func(c *JobsConfig) { c.DataRoots = []string{filepath.Dir(filepath.Dir(t.TempDir()))} })
	ts.start(t)
	good := synthetic(t, "good.csv", "text", "label", false)
	one := filepath.Join(filepath.Dir(good), "one.csv")
	os.WriteFile(one, []byte("text,label\na,x\nb,x\nc,x\n"), 0o644)
	upload := func(name string) string {
		p := filepath.Join(ts.upld, name)
		b, _ := os.ReadFile(good)
		os.WriteFile(p, b, 0o644)
		return p
	}
	boom := errors.New("boom")
	for _, tc := range []struct {
		name       string
		req        JobRequest
		onRegister func(context.Context, string) error
		onPromote  func() error
		want       string
		version    string
		registered int
	}{
		{name: "one label", req: JobRequest{Name: "m", DataPath: one, Source: "one.csv"}, want: "one.csv has 1 distinct label"},
		{name: "register fails", req: JobRequest{Name: "m", DataPath: good, Source: "good.csv", MaxEpochs: 2},
			onRegister: func(context.Context, string) error { return boom }, want: "register the trained bundle: boom"},
		{name: "promote fails", req: JobRequest{Name: "m", DataPath: upload("u1.csv"), Source: "upload:a.csv", Upload: true, Activate: true, MaxEpochs: 2},
			onPromote: func() error { return boom }, want: "version v1 is registered but was not promoted: boom", version: "v1", registered: 1},
		{name: "upload fails", req: JobRequest{Name: "m", DataPath: upload("u2.csv"), Source: "upload:b.csv", Upload: true, LabelColumn: "category"},
			want: `no column "category"`, registered: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.reg.onRegister, ts.reg.onPromote = tc.onRegister, tc.onPromote
			st, err := ts.Submit(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			j := waitStatus(t, ts, st.ID, finished)
			if j.Status != JobFailed || !strings.Contains(j.Error, tc.want) || j.Version != tc.version || j.Activated || j.Progress == 1 {
				t.Errorf("job: %+v, want error %q", j, tc.want)
			}
			for _, leak := range []string{ts.work, ts.upld, filepath.Dir(good)} {
				if strings.Contains(j.Error, leak) {
					t.Errorf("server path in %q", j.Error)
				}
			}
			if n, _ := ts.reg.counts(); n != tc.registered {
				t.Errorf("registered %d, want %d", n, tc.registered)
			}
			if _, err := os.Stat(filepath.Join(ts.work, "m-"+st.ID)); !os.IsNotExist(err) {
				t.Errorf("training dir left behind: %v", err)
			}
			if tc.req.Upload {
				if _, err := os.Stat(tc.req.DataPath); !os.IsNotExist(err) {
					t.Errorf("upload left behind: %v", err)
				}
			}
		})
	}
	if n := metricValue(t, ts.metrics.jobs.WithLabelValues(JobFailed)); n != 4 {
		t.Errorf("failed jobs metric %v", n)
	}

	// Refused at Submit: nothing queued, nothing deleted.
	outside := filepath.Join(t.TempDir(), "keep.csv")
	os.WriteFile(outside, []byte("x"), 0o644)
	for _, r := range []JobRequest{
		{Name: "../x", DataPath: good},
		{Name: "m", DataPath: good, MaxEpochs: 5000},
		{Name: "m"},
		{Name: "m", DataPath: outside, Upload: true},
		{ID: "a/b", Name: "m", DataPath: good},
	} {
		if _, err := ts.Submit(context.Background(), r); !errors.Is(err, ErrInvalidJob) {
			t.Errorf("Submit(%+v): %v, want ErrInvalidJob", r, err)
		}
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("a refused upload outside the uploads folder was touched: %v", err)
	}
	rooted := newTestService(t, func(c *JobsConfig) { c.DataRoots = []string{t.TempDir()} })
	if _, err := rooted.Submit(context.Background(), JobRequest{Name: "m", DataPath: good, Source: "good.csv"}); !errors.Is(err, ErrInvalidJob) ||
		!strings.Contains(err.Error(), "outside the trainer's data roots") || strings.Contains(err.Error(), good) {
		t.Errorf("data outside the data roots: %v", err)
	}
	st, err := ts.Submit(context.Background(), JobRequest{ID: "tj_fixed", Name: "m", DataPath: good, MaxEpochs: 1})
	if err != nil || st.ID != "tj_fixed" {
		t.Fatalf("given id: %+v %v", st, err)
	}
	if _, err := ts.Submit(context.Background(), JobRequest{ID: "tj_fixed", Name: "m", DataPath: good}); !errors.Is(err, ErrDuplicateJob) {
		t.Errorf("duplicate id: %v", err)
	}
}

// blockingEmbedder blocks until its context ends, so a job stays running.
type blockingEmbedder struct{ started chan struct{} }

func (b blockingEmbedder) EmbedTexts(ctx context.Context, _ []string) ([]float32, error) {
	select {
	case b.started <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (blockingEmbedder) Dim() int { return 4 }

// TestJobShutdown: shutdown fails the running job (cancelled) and the
// queued one (not started), and Submit refuses from then on.
func TestJobShutdown(t *testing.T) {
	emb := blockingEmbedder{started: make(chan struct{}, 1)}
	ts := newTestService(t, func(c *JobsConfig) { c.Encoder = &EncoderSource{Embedder: emb} })
	ts.start(t)
	data := synthetic(t, "d.csv", "text", "label", false)
	a, err := ts.Submit(context.Background(), JobRequest{Name: "a", DataPath: data})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ts.Submit(context.Background(), JobRequest{Name: "b", DataPath: data})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-emb.started:
	case <-time.After(30 * time.Second):
		t.Fatal("job a never started")
	}
	if st, _ := ts.Get(context.Background(), a.ID); st.Status != JobRunning || st.Stage != StageEmbedding || st.StartedAt == nil {
		t.Errorf("running job: %+v", st)
	}
	ts.stop()
	if ts.runErr != nil {
		t.Fatalf("Run: %v", ts.runErr)
	}
	for id, want := range map[string]string{a.ID: "before the job finished", b.ID: "before the job started"} {
		st, _ := ts.Get(context.Background(), id)
		if st.Status != JobFailed || !strings.Contains(st.Error, want) || st.FinishedAt == nil {
			t.Errorf("job %s after shutdown: %+v, want error with %q", id, st, want)
		}
	}
	if _, err := ts.Submit(context.Background(), JobRequest{Name: "c", DataPath: data}); !errors.Is(err, ErrStopped) {
		t.Errorf("Submit after shutdown: %v", err)
	}
	if ts.Ready() {
		t.Error("ready after shutdown")
	}
	if n := metricValue(t, ts.metrics.queued); n != 0 {
		t.Errorf("queue gauge %v after shutdown", n)
	}
}

// TestJobShutdownDuringRegistration: a job that reached Register when
// shutdown began is registered and promoted, not cut in between.
func TestJobShutdownDuringRegistration(t *testing.T) {
	ts := newTestService(t, nil)
	ts.start(t)
	entered, release := make(chan struct{}), make(chan struct{})
	ts.reg.onRegister = func(ctx context.Context, _ string) error {
		close(entered)
		<-release
		return ctx.Err()
	}
	st, err := ts.Submit(context.Background(), JobRequest{Name: "m", DataPath: synthetic(t, "d.csv", "text", "label", false),
		MaxEpochs: 2, Activate: true})
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	ts.cancel()
	time.Sleep(50 * time.Millisecond)
	close(release)
	ts.stop()
	if j, _ := ts.Get(context.Background(), st.ID); j.Status != JobSucceeded || !j.Activated || j.Version != "v1" {
		t.Errorf("job: %+v", j)
	}
}

func TestJobQueueBound(t *testing.T) {
	ts := newTestService(t, func(c *JobsConfig) { c.Queue = 2 }) // not running: jobs stay queued
	data := synthetic(t, "d.csv", "text", "label", false)
	for i := range 3 {
		_, err := ts.Submit(context.Background(), JobRequest{Name: "m", DataPath: data})
		if (err == nil) != (i < 2) || i == 2 && !errors.Is(err, ErrQueueFull) {
			t.Errorf("submit %d: %v", i, err)
		}
	}
	if n := metricValue(t, ts.metrics.queued); n != 2 {
		t.Errorf("queue gauge %v", n)
	}
	// Finished jobs beyond keepJobs are forgotten, oldest first; unfinished
	// ones never are.
	ts.mu.Lock()
	for i := range keepJobs + 5 {
		id := fmt.Sprint("tj_", i)
		ts.remember(&job{req: JobRequest{ID: id}, status: JobStatus{ID: id, Status: JobSucceeded}})
	}
	n := len(ts.byID)
	ts.mu.Unlock()
	if _, err := ts.Get(context.Background(), "tj_0"); !errors.Is(err, ErrJobNotFound) || n != keepJobs {
		t.Errorf("retention: %d jobs kept, tj_0: %v", n, err)
	}
	if _, err := ts.Get(context.Background(), fmt.Sprint("tj_", keepJobs+4)); err != nil {
		t.Errorf("newest job forgotten: %v", err)
	}
	ts.mu.Lock()
	queued := 0
	for _, j := range ts.byID {
		if j.snapshot().Status == JobQueued {
			queued++
		}
	}
	ts.mu.Unlock()
	if queued != 2 {
		t.Errorf("%d queued jobs remembered, want 2", queued)
	}
}

func TestJobsConfigErrors(t *testing.T) {
	_, err := NewJobService(JobsConfig{Queue: -1})
	for _, want := range []string{"queue -1", "work directory", "Register and Promote"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to mention %q", err, want)
		}
	}
}

// metricValue reads a counter's or gauge's value.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}

func TestJobFineTuneRefusedWithoutSetup(t *testing.T) {
	ts := newTestService(t, func(c *JobsConfig) { c.FineTuneUnavailable = errors.New("no Python environment") })
	data := synthetic(t, "tickets.csv", "text", "label", false)
	_, err := ts.Submit(context.Background(), JobRequest{Name: "m", DataPath: data, FineTune: true})
	if !errors.Is(err, ErrInvalidJob) || !strings.Contains(err.Error(), "cannot fine-tune: no Python environment") {
		t.Fatalf("Submit: %v, want ErrInvalidJob with the reason", err)
	}
}
