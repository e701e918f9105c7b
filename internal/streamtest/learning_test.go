//go:build integration

package streamtest

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestLearningLoopApacheKafka is the end-to-end learning test: a support
// model trained on 30% of Banking77 serves; labels for most of the rest
// arrive through POST /v1/feedback; the label threshold triggers a
// retrain, the challenger passes the gate and is promoted; consumer and
// gateway predictions on a probe set (in no training data) carry the new
// version and are at least 3 points more accurate; MLflow (a real server)
// holds the experiment, the parent and trial runs, the bundle and a
// registered version whose champion alias is the promoted one.
func TestLearningLoopApacheKafka(t *testing.T) {
	root := repoRoot(t)
	r := &realKafka{script: filepath.Join(root, "scripts", "kafka-local"), dir: t.TempDir()}
	r.addr = r.run(t, "start")
	t.Cleanup(func() { exec.Command("bash", r.script, "stop", "--dir", r.dir).Run() })
	testLearningLoop(t, r, root)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

type labelled struct{ text, label string }

func testLearningLoop(t *testing.T, b Backend, root string) {
	dataRoot := os.Getenv("TRIAGE_DATA_DIR")
	if dataRoot == "" {
		dataRoot = filepath.Join(root, "..", "shared", "data")
	}
	rows := readCSV(t, filepath.Join(dataRoot, "banking77", "train.csv"), "text", "category")
	rng := rand.New(rand.NewPCG(77, 1))
	rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	nBase, nProbe := len(rows)*3/10, len(rows)/10
	base, probe, pool := rows[:nBase], rows[nBase:nBase+nProbe], rows[nBase+nProbe:]

	dir := t.TempDir()
	datasets := filepath.Join(dir, "datasets")
	writeCSV(t, filepath.Join(datasets, "banking77", "train.csv"), "category", base)
	reviews := readCSV(t, filepath.Join(dataRoot, "movie-reviews", "train.csv"), "text", "label")
	writeCSV(t, filepath.Join(datasets, "movie-reviews", "train.csv"), "label", reviews[:600]) // the other default model, small

	mlflow := startMLflow(t, root)
	tp := newTopics(t, b, 3)
	suffix := tp.group
	port := freePort(t)
	gw := "http://127.0.0.1:" + strconv.Itoa(port)
	p := startProc(t, "run", "--target", "all", "--brokers", strings.Join(b.Brokers(), ","),
		"--registry", filepath.Join(dir, "registry"), "--work-dir", filepath.Join(dir, "work"), "--snapshots", filepath.Join(dir, "snapshots"),
		"--datasets", datasets, "--bootstrap-models", "--mlflow-uri", mlflow,
		"--retrain-threshold", strconv.Itoa(len(pool)), "--retrain-check-interval", "2s",
		"--route", tp.in+"=support", "--predictions-topic", tp.out, "--dead-letter-topic", tp.dlq, "--group", tp.group,
		"--feedback-topic", "fb-"+suffix, "--updates-topic", "upd-"+suffix, "--review-topic", "rq-"+suffix,
		"--train-requests-topic", "", "--http-addr", "127.0.0.1:"+strconv.Itoa(port), "--no-auth", "--rate", "1000000", "--burst", "1000000",
		"--metrics-addr", "", "--ort-lib", ortLib, "--log-level", "warn")
	waitHTTP(t, gw+"/readyz", 5*time.Minute, p)

	acc0, v0 := probeREST(t, gw, probe)
	t.Logf("before: champion %s, probe accuracy %.4f (%d probe texts, base %d rows)", v0, acc0, len(probe), len(base))

	// Labels for the pool, through the gateway (and so the feedback topic).
	sendFeedback(t, gw, pool)
	t.Logf("sent %d labels through POST /v1/feedback", len(pool))

	deadline := time.Now().Add(8 * time.Minute)
	var acc1 float64
	var v1 string
	for {
		p.alive(t)
		if acc1, v1 = probeREST(t, gw, probe[:200]); v1 != v0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new champion within 8 minutes of the labels (still %s)", v0)
		}
		time.Sleep(3 * time.Second)
	}
	acc1, v1 = probeREST(t, gw, probe)
	t.Logf("after: champion %s, probe accuracy %.4f via REST (%+.4f)", v1, acc1, acc1-acc0)
	if acc1 < acc0+0.03 {
		t.Errorf("REST probe accuracy %.4f is not 3 points above %.4f", acc1, acc0)
	}
	kacc, kver := probeKafka(t, b, tp, probe)
	t.Logf("after: Kafka predictions on %s, probe accuracy %.4f", kver, kacc)
	if kver != v1 || kacc < acc0+0.03 {
		t.Errorf("Kafka probe: version %s accuracy %.4f, want %s and >= %.4f", kver, kacc, v1, acc0+0.03)
	}
	checkMLflow(t, mlflow, "support", v1)
}

func readCSV(t *testing.T, path, textCol, labelCol string) []labelled {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("training data (set TRIAGE_DATA_DIR): %v", err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	ti, li := -1, -1
	for i, h := range recs[0] {
		switch h {
		case textCol:
			ti = i
		case labelCol:
			li = i
		}
	}
	var out []labelled
	for _, r := range recs[1:] {
		out = append(out, labelled{r[ti], r[li]})
	}
	return out
}

func writeCSV(t *testing.T, path, labelCol string, rows []labelled) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"text", labelCol})
	for _, r := range rows {
		w.Write([]string{r.text, r.label})
	}
	w.Flush()
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startMLflow starts a real tracking server for the test.
func startMLflow(t *testing.T, root string) string {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(root, "scripts", "mlflow-local")
	out, err := exec.Command("bash", script, "start", "--dir", dir).Output()
	if err != nil {
		t.Fatalf("mlflow-local start: %v", err)
	}
	t.Cleanup(func() { exec.Command("bash", script, "stop", "--dir", dir).Run() })
	ls := lines(string(out))
	return ls[len(ls)-1]
}

// probeREST classifies the probe texts through the gateway and returns the
// accuracy and the version that answered.
func probeREST(t *testing.T, gw string, probe []labelled) (float64, string) {
	t.Helper()
	right, version := 0, ""
	for lo := 0; lo < len(probe); lo += 200 {
		batch := probe[lo:min(lo+200, len(probe))]
		texts := make([]string, len(batch))
		for i, r := range batch {
			texts[i] = r.text
		}
		body, _ := json.Marshal(map[string]any{"model": "support", "texts": texts})
		resp, err := http.Post(gw+"/v1/predict", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var pr struct {
			Predictions []struct {
				Label string
				Model struct{ Version string }
			}
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || json.Unmarshal(raw, &pr) != nil || len(pr.Predictions) != len(batch) {
			t.Fatalf("predict: %d %.300s", resp.StatusCode, raw)
		}
		for i, p := range pr.Predictions {
			if p.Label == batch[i].label {
				right++
			}
			version = p.Model.Version
		}
	}
	return float64(right) / float64(len(probe)), version
}

// sendFeedback posts one label per pool row, 16 at a time.
func sendFeedback(t *testing.T, gw string, pool []labelled) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				body, _ := json.Marshal(map[string]string{"id": fmt.Sprintf("fb-%d", i), "text": pool[i].text, "label": pool[i].label, "model": "support"})
				resp, err := http.Post(gw+"/v1/feedback", "application/json", bytes.NewReader(body))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						err = fmt.Errorf("feedback %d: status %d", i, resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range pool {
		next <- i
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		t.Fatal(firstErr)
	}
}

// probeKafka sends the probe texts to the consumer's input topic and reads
// their predictions back.
func probeKafka(t *testing.T, b Backend, tp topics, probe []labelled) (float64, string) {
	t.Helper()
	want := map[string]string{}
	var recs []*kgo.Record
	for i, r := range probe {
		id := fmt.Sprintf("probe-%d", i)
		want[id] = r.label
		recs = append(recs, inputRecord(id, r.text))
	}
	produceInputs(t, b, tp.in, recs)
	cl := newClient(t, b, kgo.ConsumeTopics(tp.out), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got := map[string]string{}
	version := ""
	for len(got) < len(want) && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var p struct {
				ID    string
				Label string
				Model struct{ Version string }
			}
			if json.Unmarshal(r.Value, &p) == nil && want[p.ID] != "" {
				got[p.ID], version = p.Label, p.Model.Version
			}
		})
	}
	right := 0
	for id, l := range want {
		if got[id] == l {
			right++
		}
	}
	if len(got) < len(want) {
		t.Fatalf("%d of %d probe predictions read back", len(got), len(want))
	}
	return float64(right) / float64(len(want)), version
}

// checkMLflow asserts through MLflow's REST API: the experiment, a parent
// run for version with params, metrics and the bundle artifact, its trial
// runs, and the registered model's champion alias on version.
func checkMLflow(t *testing.T, uri, model, version string) {
	t.Helper()
	get := func(path string, q url.Values, out any) {
		t.Helper()
		resp, err := http.Get(uri + path + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || json.Unmarshal(raw, out) != nil {
			t.Fatalf("GET %s: %d %.300s", path, resp.StatusCode, raw)
		}
	}
	post := func(path string, body any, out any) {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := http.Post(uri+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || json.Unmarshal(raw, out) != nil {
			t.Fatalf("POST %s: %d %.300s", path, resp.StatusCode, raw)
		}
	}
	var exp struct {
		Experiment struct {
			ID string `json:"experiment_id"`
		} `json:"experiment"`
	}
	get("/api/2.0/mlflow/experiments/get-by-name", url.Values{"experiment_name": {model}}, &exp)
	type kv struct{ Key, Value string }
	var runs struct {
		Runs []struct {
			Info struct {
				RunID string `json:"run_id"`
			} `json:"info"`
			Data struct {
				Params  []kv `json:"params"`
				Metrics []struct {
					Key   string
					Value float64
				} `json:"metrics"`
				Tags []kv `json:"tags"`
			} `json:"data"`
		} `json:"runs"`
	}
	post("/api/2.0/mlflow/runs/search", map[string]any{"experiment_ids": []string{exp.Experiment.ID}, "max_results": 1000}, &runs)
	parent := ""
	for _, r := range runs.Runs {
		for _, tag := range r.Data.Tags {
			if tag.Key == "triage.version" && tag.Value == version {
				parent = r.Info.RunID
				if len(r.Data.Params) == 0 || len(r.Data.Metrics) == 0 {
					t.Errorf("parent run %s: %d params, %d metrics", parent, len(r.Data.Params), len(r.Data.Metrics))
				}
			}
		}
	}
	if parent == "" {
		t.Fatalf("no MLflow run of %s %s among %d runs", model, version, len(runs.Runs))
	}
	trials := 0
	for _, r := range runs.Runs {
		for _, tag := range r.Data.Tags {
			if tag.Key == "mlflow.parentRunId" && tag.Value == parent {
				trials++
			}
		}
	}
	var arts struct {
		Files []struct{ Path string } `json:"files"`
	}
	get("/api/2.0/mlflow/artifacts/list", url.Values{"run_id": {parent}, "path": {"bundle"}}, &arts)
	var alias struct {
		ModelVersion struct {
			Version string `json:"version"`
			RunID   string `json:"run_id"`
		} `json:"model_version"`
	}
	get("/api/2.0/mlflow/registered-models/alias", url.Values{"name": {model}, "alias": {"champion"}}, &alias)
	t.Logf("MLflow: experiment %s, parent run %s with %d trial runs, %d bundle files, champion -> MLflow version %s (run %s)",
		exp.Experiment.ID, parent, trials, len(arts.Files), alias.ModelVersion.Version, alias.ModelVersion.RunID)
	if trials == 0 || len(arts.Files) == 0 || alias.ModelVersion.RunID != parent {
		t.Errorf("MLflow records incomplete: %d trials, %d artifacts, champion run %q (want %q)", trials, len(arts.Files), alias.ModelVersion.RunID, parent)
	}
}
