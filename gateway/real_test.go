package gateway

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/trainer"
)

// trainReal trains a small real model on a synthetic CSV and opens it
// through ONNX Runtime.
func trainReal(t testing.TB, name, version string) (*inference.Model, string) {
	t.Helper()
	dir := t.TempDir()
	data := syntheticCSV(t, dir, "train.csv", 1)
	res, err := trainer.Train(context.Background(), trainer.Options{DataPath: data, OutDir: filepath.Join(dir, name),
		Name: name, Version: version, Seed: 42, MaxEpochs: 5})
	if err != nil {
		t.Fatal(err)
	}
	m, err := inference.Open(res.Dir, inference.ModelOptions{Session: inference.SessionOptions{PoolSize: 2, IntraOpThreads: 1}})
	if err != nil {
		t.Fatalf("open trained model (ONNX Runtime from .cache/onnxruntime; run scripts/fetch-onnxruntime.sh): %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m, res.Dir
}

func TestRealModelPredict(t *testing.T) {
	m, _ := trainReal(t, "support", "v1")
	ts := newTestServer(t, map[string]Model{"support": m}, func(c *Config) { c.BatchMaxWait = 5 * time.Millisecond })

	code, _, b := ts.call(t, "POST", "/v1/predict", "predictor", PredictRequest{Texts: []string{
		"invoice refund charge overcharged", "parcel courier tracking delivery", "password login locked reset"}})
	if code != 200 {
		t.Fatalf("%d %s", code, b)
	}
	preds := decodeJSON[PredictResponse](t, b).Predictions
	for i, want := range []string{"billing", "shipping", "account"} {
		p := preds[i]
		if p.Label != want || p.Confidence < 0.5 || len(p.Scores) != 3 || p.Model.Name != "support" || p.Model.Version != "v1" {
			t.Errorf("text %d: %+v, want %s", i, p, want)
		}
		var sum float32
		for _, s := range p.Scores {
			sum += s.Score
		}
		if sum < 0.99 || sum > 1.01 {
			t.Errorf("text %d: scores sum to %v", i, sum)
		}
	}

	// Real metadata from model.json.
	code, _, b = ts.call(t, "GET", "/v1/models/support", "predictor", nil)
	info := decodeJSON[ModelInfo](t, b)
	if code != 200 || !slices.Equal(info.Labels, []string{"account", "billing", "shipping"}) || info.Metrics.Validation.Accuracy < 0.8 ||
		info.Training.Rows != 300 || len(info.Metrics.Validation.PerClass) != 3 {
		t.Errorf("model info: %d %s", code, b)
	}
	code, _, b = ts.call(t, "GET", "/v1/models/support/params", "predictor", nil)
	params := decodeJSON[ModelParams](t, b)
	if code != 200 || params.HyperParams["loss"] != "logistic" || params.HyperParams["optimizer"] != "adagrad" || len(params.Search) != 4 {
		t.Errorf("params: %d %s", code, b)
	}

	// 32 concurrent requests through the real model are coalesced.
	const n = 32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			text := []string{"refund my invoice", "where is my parcel", "cannot login"}[i%3]
			code, _, b := ts.call(t, "POST", "/v1/predict", "admin", PredictRequest{Text: &text, Model: "support"})
			if code != 200 {
				t.Errorf("concurrent %d: %d %s", i, code, b)
				return
			}
			if got, want := decodeJSON[PredictResponse](t, b).Predictions[0].Label, fakeLabels[i%3]; got != want {
				t.Errorf("concurrent %d (%q): %s, want %s (results must not be mixed up across requests)", i, text, got, want)
			}
		})
	}
	close(start)
	wg.Wait()
	count, sum := histogram(t, ts.reg, "triage_gateway_batch_size", map[string]string{"model": "support"})
	// First request: one call of 3; then 32 texts in count-1 calls.
	if sum != 3+n || count < 2 || count-1 >= n {
		t.Errorf("batch_size: %d calls for %v texts; want the 32 requests in fewer than 32 calls", count, sum)
	}
	t.Logf("real model: 32 concurrent requests in %d inference calls", count-1)
}

// multipartTrain builds a multipart POST /v1/train body.
func multipartTrain(t *testing.T, fields map[string]string, fileName string, data []byte) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	for k, v := range fields {
		w.WriteField(k, v)
	}
	if fileName != "" {
		fw, err := w.CreateFormFile("file", fileName)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
	}
	w.Close()
	return &buf, w.FormDataContentType()
}

func (ts *testServer) postMultipart(t *testing.T, key string, body *bytes.Buffer, ct string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest("POST", "/v1/train", body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+ts.keys[key])
	code, _, b := ts.do(t, req)
	return code, b
}

// waitJob polls GET /v1/train/{id} until the job finishes.
func (ts *testServer) waitJob(t *testing.T, id string) TrainJob {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		code, _, b := ts.call(t, "GET", "/v1/train/"+id, "trainer", nil)
		if code != 200 {
			t.Fatalf("poll %s: %d %s", id, code, b)
		}
		j := decodeJSON[TrainJob](t, b)
		if j.Status == JobSucceeded || j.Status == JobFailed {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s still %s after 2m", id, j.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTrainUploadActivate: upload a CSV, poll to success; the trainer
// registers the bundle (which serves correctly) and promotes the version.
// The gateway's own serving set changes only through promotion events.
func TestTrainUploadActivate(t *testing.T) {
	old, _ := trainReal(t, "support", "v1")
	var tt *testTrainer
	ts := newTestServer(t, map[string]Model{"support": old}, func(c *Config) { tt = withJobs(t, c) })

	csv, err := os.ReadFile(syntheticCSV(t, t.TempDir(), "new.csv", 7))
	if err != nil {
		t.Fatal(err)
	}
	body, ct := multipartTrain(t, map[string]string{"name": "support", "activate": "true", "max_epochs": "4", "seed": "3"}, "tickets.csv", csv)
	code, b := ts.postMultipart(t, "trainer", body, ct)
	if code != 202 {
		t.Fatalf("train: %d %s", code, b)
	}
	acc := decodeJSON[TrainAccepted](t, b)
	if !strings.HasPrefix(acc.ID, "tj_") || acc.Status != JobQueued || acc.Location != "/v1/train/"+acc.ID {
		t.Fatalf("accepted: %+v", acc)
	}
	j := ts.waitJob(t, acc.ID)
	if j.Status != JobSucceeded || !j.Activated || j.Progress != 1 || j.Error != "" || j.Source != "upload:tickets.csv" || j.Version != "v1" {
		t.Fatalf("job: %+v", j)
	}
	if j.Metrics == nil || j.Metrics.Validation.Accuracy < 0.8 || j.HyperParams["loss"] != "logistic" || j.StartedAt == nil || j.FinishedAt == nil {
		t.Errorf("job metrics: %+v", j)
	}
	if filepath.Dir(j.BundleDir) != tt.workDir || filepath.Base(j.BundleDir) != "support-"+acc.ID {
		t.Errorf("bundle dir %q", j.BundleDir)
	}
	if _, err := os.Stat(j.BundleDir); !os.IsNotExist(err) {
		t.Errorf("training dir kept after registration: %v", err)
	}
	if ents, _ := os.ReadDir(tt.uploads); len(ents) != 0 {
		t.Errorf("upload kept after the job: %v", ents)
	}
	regs, proms := tt.reg.snapshot()
	if len(regs) != 1 || regs[0].name != "support" || regs[0].version != "v1" {
		t.Fatalf("registered: %+v", regs)
	}
	if l := regs[0].lineage; l.JobID != acc.ID || l.Source != "upload:tickets.csv" || len(l.DataSHA256) != 64 || l.Rows != 300 ||
		l.Metrics["val_accuracy"] != j.Metrics.Validation.Accuracy || l.RequestedBy != "api-key:trainer" || l.Seed != 3 {
		t.Errorf("lineage: %+v", l)
	}
	if want := "support v1 api-key:trainer training job " + acc.ID; len(proms) != 1 || proms[0] != want {
		t.Errorf("promoted %q, want %q", proms, want)
	}

	// The registered bundle is the trained model.
	m, err := inference.Open(regs[0].dir, inference.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	preds, err := m.Predict(context.Background(), []string{"courier parcel tracking"})
	if err != nil || preds[0].Label != "shipping" {
		t.Errorf("registered model: %+v %v", preds, err)
	}
	// Promotion reaches the serving set through the registry's events, not
	// through the gateway: what it serves is unchanged here.
	code, _, b = ts.call(t, "GET", "/v1/models/support", "predictor", nil)
	if info := decodeJSON[ModelInfo](t, b); code != 200 || info.Version != "v1" {
		t.Errorf("models after training: %s", b)
	}
}

func TestTrainFromDataRoot(t *testing.T) {
	root := t.TempDir()
	syntheticCSV(t, root, "corpora/tickets.csv", 5)
	outside := syntheticCSV(t, t.TempDir(), "outside.csv", 6)
	if err := os.Symlink(outside, filepath.Join(root, "corpora", "escape.csv")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "notes.txt"), []byte("x"), 0o644)
	m := newFakeModel(t, "support", "v1")
	var tt *testTrainer
	ts := newTestServer(t, map[string]Model{"support": m}, func(c *Config) {
		tt = withJobs(t, c)
		c.DataRoot = root
	})
	for _, tc := range []struct {
		body   string
		status int
		field  string
	}{
		{`{"data_path":"../outside.csv","name":"x"}`, 400, "data_path"},
		{`{"data_path":"corpora/../../outside.csv","name":"x"}`, 400, "data_path"},
		{`{"data_path":"` + outside + `","name":"x"}`, 400, "data_path"},
		{`{"data_path":"corpora/escape.csv","name":"x"}`, 400, "data_path"},
		{`{"data_path":"corpora/missing.csv","name":"x"}`, 422, "data_path"},
		{`{"data_path":"notes.txt","name":"x"}`, 422, "data_path"},
		{`{"data_path":"corpora","name":"x"}`, 422, "data_path"},
		{`{"data_path":"corpora/tickets.csv"}`, 400, "name"},
		{`{"data_path":"corpora/tickets.csv","name":"../evil"}`, 422, "name"},
		{`{"data_path":"corpora/tickets.csv","name":"x","max_epochs":5000}`, 422, "max_epochs"},
		{`{"data_path":"corpora/tickets.csv","name":"x","epochs":5}`, 400, "epochs"},
		{`{"data_path":"corpora/tickets.csv","name":"x","activate":"yes"}`, 400, "activate"},
	} {
		code, _, b := ts.call(t, "POST", "/v1/train", "trainer", tc.body)
		if e := errBody(t, b); code != tc.status || e.Field != tc.field {
			t.Errorf("%s: %d %+v, want %d field %q", tc.body, code, e, tc.status, tc.field)
		}
		if strings.Contains(string(b), root) {
			t.Errorf("%s: server path leaked: %s", tc.body, b)
		}
	}

	// A valid job without activate: registered, not promoted.
	code, _, b := ts.call(t, "POST", "/v1/train", "trainer", `{"data_path":"corpora/tickets.csv","name":"tickets","max_epochs":3}`)
	if code != 202 {
		t.Fatalf("train: %d %s", code, b)
	}
	j := ts.waitJob(t, decodeJSON[TrainAccepted](t, b).ID)
	if j.Status != JobSucceeded || j.Activated || j.Source != "corpora/tickets.csv" || j.Metrics == nil || j.Version != "v1" {
		t.Fatalf("job: %+v", j)
	}
	regs, proms := tt.reg.snapshot()
	if len(regs) != 1 || regs[0].lineage.Source != "corpora/tickets.csv" || !filepath.IsAbs(regs[0].lineage.DataPath) || len(proms) != 0 {
		t.Errorf("registry after a job without activate: %+v %v", regs, proms)
	}
	if names := ts.models.names(); !slices.Equal(names, []string{"support"}) {
		t.Errorf("serving set changed: %v", names)
	}

	// A job that fails reports why, in the client's terms.
	bad := filepath.Join(root, "bad.csv")
	os.WriteFile(bad, []byte("text,category\nhello,a\n"), 0o644)
	code, _, b = ts.call(t, "POST", "/v1/train", "trainer", `{"data_path":"bad.csv","name":"bad"}`)
	if code != 202 {
		t.Fatalf("train bad: %d %s", code, b)
	}
	j = ts.waitJob(t, decodeJSON[TrainAccepted](t, b).ID)
	if j.Status != JobFailed || !strings.Contains(j.Error, "bad.csv") || strings.Contains(j.Error, root) {
		t.Errorf("failed job: %+v", j)
	}
	if code, _, b := ts.call(t, "GET", "/v1/train/tj_unknown", "trainer", nil); code != 404 {
		t.Errorf("unknown job: %d %s", code, b)
	}
}

func TestTrainUploadValidation(t *testing.T) {
	ts := newTestServer(t, map[string]Model{"support": newFakeModel(t, "support", "v1")}, func(c *Config) {
		withJobs(t, c)
		c.UploadLimit = 1 << 10
	})
	small := []byte("text,label\na,b\n")
	for _, tc := range []struct {
		fields map[string]string
		file   string
		data   []byte
		status int
		field  string
	}{
		{map[string]string{"name": "x"}, "", nil, 400, "file"},
		{map[string]string{"name": "x"}, "data.exe", small, 422, "file"},
		{map[string]string{"name": "x", "colour": "red"}, "d.csv", small, 400, "colour"},
		{map[string]string{"name": "x", "activate": "maybe"}, "d.csv", small, 400, "activate"},
		{map[string]string{"name": "x", "data_path": "a.csv"}, "d.csv", small, 400, "data_path"},
		{map[string]string{}, "d.csv", small, 400, "name"},
		{map[string]string{"name": "x"}, "d.csv", bytes.Repeat([]byte("a"), 2<<10), 413, ""},
	} {
		body, ct := multipartTrain(t, tc.fields, tc.file, tc.data)
		code, b := ts.postMultipart(t, "trainer", body, ct)
		if e := errBody(t, b); code != tc.status || e.Field != tc.field {
			t.Errorf("%v %s: %d %+v, want %d field %q", tc.fields, tc.file, code, e, tc.status, tc.field)
		}
	}
}
