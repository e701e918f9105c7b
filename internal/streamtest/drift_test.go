//go:build integration

package streamtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/internal/dataset"
	"github.com/triage-ml/triage/internal/estest"
	"github.com/triage-ml/triage/monitor"
	"github.com/triage-ml/triage/schemas"
	"github.com/triage-ml/triage/trainer"
)

// driftWindow is the reference window the test's model is trained for, and
// so the monitor's count window (the default, 500).
const driftWindow = trainer.DefaultMonitorWindow

// TestDriftApacheKafka is the monitoring acceptance test, on Apache Kafka
// and a real Elasticsearch: a support model trained on Banking77 serves
// (consumer, monitor and gateway in one `triage run` process).
//   - Its validation texts stream with their human labels on the feedback
//     topic: no drift event in at least 10 windows, and the accuracy
//     estimated without labels stays within 3 points of the true one.
//   - Movie-review sentences stream into the support topic: a drift event
//     within one window, on triage.drift, in triage-drift-* and /v1/drift,
//     and the estimated accuracy drops.
//   - A label-prior shift (some intents gone, others boosted) grows
//     gradually: PSI catches it; the window it fires at is printed.
//   - Elasticsearch stops mid-stream: classification goes on exactly once
//     at the same pace, dropped documents are counted, and indexing
//     resumes once the node is back.
func TestDriftApacheKafka(t *testing.T) {
	root := repoRoot(t)
	r := &realKafka{script: filepath.Join(root, "scripts", "kafka-local"), dir: t.TempDir()}
	r.addr = r.run(t, "start")
	t.Cleanup(func() { exec.Command("bash", r.script, "stop", "--dir", r.dir).Run() })
	es := startElasticsearch(t, root)

	dataRoot := cmpOr(os.Getenv("TRIAGE_DATA_DIR"), filepath.Join(root, "..", "shared", "data"))
	data := filepath.Join(dataRoot, "banking77", "train.csv")
	dir := t.TempDir()
	bundleDir := filepath.Join(dir, "support")
	start := time.Now()
	res, err := trainer.Train(context.Background(), trainer.Options{DataPath: data, TextColumn: "text", LabelColumn: "category",
		OutDir: bundleDir, Name: "support", Seed: 42, MonitorWindow: driftWindow})
	if err != nil {
		t.Fatal(err)
	}
	ref := res.Manifest.Monitoring
	t.Logf("support trained in %.0fs: validation accuracy %.4f; reference: T=%.3f, ECE %.4f -> %.4f, window %d, false-alarm rate %.3f",
		time.Since(start).Seconds(), res.Manifest.Metrics.Validation.Accuracy, ref.Temperature, ref.ECEBefore, ref.ECEAfter, ref.WindowSize, ref.FalseAlarmRate)
	// The validation split as the trainer carved it (same seed, fraction).
	ds, err := dataset.Load(data, dataset.Options{TextColumn: "text", LabelColumn: "category"})
	if err != nil {
		t.Fatal(err)
	}
	_, val, err := dataset.StratifiedSplit(ds.Examples, res.Manifest.Training.ValFraction, 42)
	if err != nil {
		t.Fatal(err)
	}
	reviews := readCSV(t, filepath.Join(dataRoot, "movie-reviews", "train.csv"), "text", "label")

	reg := filepath.Join(dir, "registry")
	if out, err := runTriage("models", "register", "support", bundleDir, "--promote", "--registry", reg, "--updates-topic", ""); err != nil {
		t.Fatalf("register: %v\n%s", err, out)
	}
	tp := newTopics(t, r, 3)
	fbTopic, driftTopic := "fb-"+tp.group, "drift-"+tp.group
	port, mport := freePort(t), freePort(t)
	gw, metricsURL := "http://127.0.0.1:"+strconv.Itoa(port), "http://127.0.0.1:"+strconv.Itoa(mport)+"/metrics"
	// Human labels for every validation text, as their record ids, on the
	// topic before the monitor starts: it reads them from the start, so
	// they are there before their predictions arrive.
	fb := newClient(t, r, kgo.DefaultProduceTopic(fbTopic), kgo.AllowAutoTopicCreation())
	var recs []*kgo.Record
	passes := (10*driftWindow + len(val) - 1) / len(val) // enough for 10 windows
	for pass := range passes {
		for i, ex := range val {
			id := fmt.Sprintf("val%d-%d", pass, i)
			v, _ := json.Marshal(schemas.Feedback{ID: id, Text: ex.Text, Label: ex.Label, Model: "support"})
			recs = append(recs, &kgo.Record{Key: []byte(id), Value: v})
		}
	}
	if err := fb.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "run", "--target", "consumer,monitor,gateway", "--brokers", r.addr, "--registry", reg,
		"--route", tp.in+"=support", "--predictions-topic", tp.out, "--dead-letter-topic", tp.dlq, "--group", tp.group,
		"--updates-topic", "", "--feedback-topic", fbTopic, "--review-topic", "",
		"--monitor-predictions-topic", tp.out, "--monitor-feedback-topic", fbTopic, "--monitor-drift-topic", driftTopic,
		"--monitor-group", "mon-"+tp.group, "--monitor-window-time", "10m", "--monitor-sample-rate", "1",
		"--elasticsearch-url", es.url, "--elasticsearch-buffer", "300", "--elasticsearch-flush-interval", "500ms",
		"--http-addr", "127.0.0.1:"+strconv.Itoa(port), "--no-auth", "--metrics-addr", "127.0.0.1:"+strconv.Itoa(mport),
		"--ort-lib", ortLib, "--log-level", "warn")
	waitHTTP(t, gw+"/readyz", 3*time.Minute, p)
	out := watchOutputs(t, r, tp)
	var ids []string            // every id streamed, for the exactly-once check
	time.Sleep(2 * time.Second) // the monitor's feedback reader catches up with the labels

	// 1. In distribution: the validation texts, five times, shuffled.
	rng := rand.New(rand.NewPCG(11, 12))
	var in []*kgo.Record
	for pass := range passes {
		order := rng.Perm(len(val))
		for _, i := range order {
			id := fmt.Sprintf("val%d-%d", pass, i)
			in = append(in, inputRecord(id, val[i].Text))
			ids = append(ids, id)
		}
	}
	// Whole windows only, so the next phase starts a window of its own.
	nIn := len(in) / driftWindow
	in, ids = in[:nIn*driftWindow], ids[:nIn*driftWindow]
	produceInputs(t, r, tp.in, in)
	ws := waitWindows(t, gw, nIn, 3*time.Minute, p)
	var sumErr, maxErr float64
	for i, w := range ws {
		if w.TrueAccuracy == nil {
			t.Fatalf("window %d has no true accuracy (%d labelled)", i, w.Labelled)
		}
		d := math.Abs(w.EstimatedAccuracy - *w.TrueAccuracy)
		sumErr, maxErr = sumErr+d, max(maxErr, d)
		t.Logf("in-distribution window %2d: n=%d estimated %.4f (CBPE %.4f) true %.4f |diff| %.4f  PSI %.4f conf %.3f oov %.3f alerts %v",
			i+1, w.Window.Count, w.EstimatedAccuracy, w.EstimatedAccuracyCBPE, *w.TrueAccuracy, d, w.LabelPSI, w.Confidence.Mean, w.Input.OOVRate, w.Alerts)
		if w.Drift {
			t.Errorf("in-distribution window %d raised a drift event: %v", i+1, w.Alerts)
		}
	}
	if len(ws) < 10 {
		t.Fatalf("%d in-distribution windows, want at least 10", len(ws))
	}
	meanErr := sumErr / float64(len(ws))
	t.Logf("in distribution: %d windows, no drift event; |estimated - true| mean %.4f, max %.4f", len(ws), meanErr, maxErr)
	if meanErr > 0.03 {
		t.Errorf("estimated accuracy is %.4f from the true accuracy on average, want within 0.03", meanErr)
	}

	// 2. Out of domain: movie-review sentences into the support topic.
	in = in[:0]
	for i := range driftWindow {
		id := fmt.Sprintf("mr-%d", i)
		in = append(in, inputRecord(id, reviews[i].text))
		ids = append(ids, id)
	}
	produceInputs(t, r, tp.in, in)
	ws = waitWindows(t, gw, nIn+1, 2*time.Minute, p)
	ood := ws[nIn]
	t.Logf("out of domain window: estimated accuracy %.4f (CBPE %.4f), PSI %.4f, conf %.3f, oov %.3f, alerts %v",
		ood.EstimatedAccuracy, ood.EstimatedAccuracyCBPE, ood.LabelPSI, ood.Confidence.Mean, ood.Input.OOVRate, ood.Alerts)
	if !ood.Drift {
		t.Fatalf("the first out-of-domain window raised no drift event: %+v", ood)
	}
	if ood.EstimatedAccuracy > ws[0].EstimatedAccuracy-0.3 {
		t.Errorf("estimated accuracy under the shift %.4f is not clearly below in-distribution %.4f", ood.EstimatedAccuracy, ws[0].EstimatedAccuracy)
	}
	ev := readDriftEvent(t, r, driftTopic)
	if ev.Window.End != ood.Window.End || !ev.Drift {
		t.Errorf("drift topic event %+v is not the out-of-domain window (end %v)", ev.Window, ood.Window.End)
	}
	waitESDrift(t, es.url, ood.Window.End, 2*time.Minute)
	t.Logf("drift event seen on %s, in triage-drift-* and in /v1/drift", driftTopic)

	// 3. Label-prior shift, growing: a share s of each window comes from
	// a distribution with 20 intents gone and 5 boosted.
	byLabel := map[string][]int{}
	for i, ex := range val {
		byLabel[ex.Label] = append(byLabel[ex.Label], i)
	}
	labels := make([]string, 0, len(byLabel))
	for l := range byLabel {
		labels = append(labels, l)
	}
	slices.Sort(labels)
	rng.Shuffle(len(labels), func(i, j int) { labels[i], labels[j] = labels[j], labels[i] })
	boosted, kept := labels[:5], labels[20:]
	fired := -1
	for step := 1; step <= 6 && fired < 0; step++ {
		share := float64(step) * 0.1
		in = in[:0]
		for i := range driftWindow {
			var l string
			switch {
			case rng.Float64() < share && rng.IntN(2) == 0:
				l = boosted[rng.IntN(len(boosted))]
			case rng.Float64() < share:
				l = kept[rng.IntN(len(kept))]
			default:
				l = val[rng.IntN(len(val))].Label
			}
			j := byLabel[l][rng.IntN(len(byLabel[l]))]
			id := fmt.Sprintf("prior%d-%d", step, i)
			in = append(in, inputRecord(id, val[j].Text))
			ids = append(ids, id)
		}
		produceInputs(t, r, tp.in, in)
		ws = waitWindows(t, gw, nIn+1+step, 2*time.Minute, p)
		w := ws[len(ws)-1]
		t.Logf("label-prior shift step %d (shifted share %.2f): PSI %.4f (threshold %.4f) estimated accuracy %.4f alerts %v",
			step, share, w.LabelPSI, threshold(w, "label_psi"), w.EstimatedAccuracy, w.Alerts)
		if slices.Contains(w.Alerts, "label_psi") {
			fired = step
		}
	}
	if fired < 0 {
		t.Errorf("PSI never fired on a label-prior shift of up to 60%% of the window")
	} else {
		t.Logf("label-prior shift caught by PSI at step %d (window %d)", fired, nIn+1+fired)
	}

	// 4. Elasticsearch down mid-stream.
	before := esCount(t, es.url, "triage-predictions-*")
	in = in[:0]
	for pass := range 2 {
		for i := range val {
			id := fmt.Sprintf("esdown%d-%d", pass, i)
			in = append(in, inputRecord(id, val[i].Text))
			ids = append(ids, id)
		}
	}
	have, _ := out.counts()
	t0 := time.Now()
	produceInputs(t, r, tp.in, in[:len(in)/2])
	out.waitFor(t, have+len(in)/2, 2*time.Minute)
	up := time.Since(t0)
	es.stop(t)
	t0 = time.Now()
	produceInputs(t, r, tp.in, in[len(in)/2:])
	out.waitFor(t, have+len(in), 2*time.Minute)
	down := time.Since(t0)
	t.Logf("classification with Elasticsearch up: %d records in %v; down: %d in %v (ratio %.2f)", len(in)/2, up, len(in)/2, down, down.Seconds()/up.Seconds())
	if down > 2*up+5*time.Second {
		t.Errorf("classification slowed with Elasticsearch down: %v vs %v", down, up)
	}
	out.exactlyOnce(t, ids)
	dropped := waitMetric(t, metricsURL, `triage_elasticsearch_documents_total{kind="predictions",result="dropped"}`, 1, time.Minute)
	t.Logf("documents dropped while Elasticsearch was down (counted): %.0f", dropped)
	es.restart(t)
	// Fresh traffic after the restart must be indexed again.
	in = in[:0]
	for i := range driftWindow {
		id := fmt.Sprintf("esback-%d", i)
		in = append(in, inputRecord(id, val[i].Text))
		ids = append(ids, id)
	}
	produceInputs(t, r, tp.in, in)
	deadline := time.Now().Add(90 * time.Second)
	for esCount(t, es.url, "triage-predictions-*") <= before+int64(len(val)) {
		if time.Now().After(deadline) {
			t.Fatalf("indexing did not resume after Elasticsearch restarted: %d prediction documents (before the outage %d)",
				esCount(t, es.url, "triage-predictions-*"), before)
		}
		time.Sleep(time.Second)
	}
	out.waitFor(t, len(ids), time.Minute)
	out.exactlyOnce(t, ids)
	t.Logf("indexing resumed after the restart: %d prediction documents", esCount(t, es.url, "triage-predictions-*"))
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func threshold(w schemas.DriftWindow, stat string) float64 {
	for _, th := range w.Thresholds {
		if th.Statistic == stat {
			return th.Value
		}
	}
	return math.NaN()
}

// waitWindows polls /v1/drift until the support stream has n windows.
func waitWindows(t *testing.T, gw string, n int, timeout time.Duration, p *consumerProc) []schemas.DriftWindow {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p.alive(t)
		var rep monitor.Report
		if err := getJSON(gw+"/v1/drift?model=support&limit=1000", &rep); err == nil && len(rep.Streams) == 1 {
			if ws := rep.Streams[0].Windows; len(ws) >= n {
				return ws
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d windows in /v1/drift within %v", n, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// readDriftEvent returns the latest record of the drift topic.
func readDriftEvent(t *testing.T, b Backend, topic string) schemas.DriftWindow {
	t.Helper()
	cl := newClient(t, b, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no drift event on %s", topic)
		}
		var last *kgo.Record
		fs.EachRecord(func(r *kgo.Record) { last = r })
		if last != nil {
			var w schemas.DriftWindow
			if err := schemas.Decode(schemas.KindDrift, last.Value, &w); err != nil {
				t.Fatalf("drift event fails its schema: %v\n%s", err, last.Value)
			}
			return w
		}
	}
}

// elasticsearch is a node started by scripts/elasticsearch-local.
type elasticsearch struct {
	root, dir, url string
}

func startElasticsearch(t *testing.T, root string) *elasticsearch {
	t.Helper()
	es := &elasticsearch{root: root, dir: t.TempDir()}
	es.url = es.run(t, "start")
	t.Cleanup(func() { estest.Run(root, "stop", "--dir", es.dir) })
	return es
}

func (es *elasticsearch) run(t *testing.T, verb string) string {
	t.Helper()
	out, err := estest.Run(es.root, verb, "--dir", es.dir)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (es *elasticsearch) stop(t *testing.T) { es.run(t, "stop") }

func (es *elasticsearch) restart(t *testing.T) {
	if u := es.run(t, "start"); u != es.url {
		t.Fatalf("Elasticsearch came back on %s, not %s", u, es.url)
	}
}

func esCount(t *testing.T, url, index string) int64 {
	t.Helper()
	http.Post(url+"/"+index+"/_refresh", "application/json", nil)
	var c struct {
		Count int64 `json:"count"`
	}
	if err := getJSON(url+"/"+index+"/_count", &c); err != nil {
		return 0
	}
	return c.Count
}

// waitESDrift waits for the drift document of the window ending at end:
// drifted windows of the support model are searched and their window.end
// compared as times (the index keeps milliseconds; _source keeps the value
// as sent).
func waitESDrift(t *testing.T, url string, end time.Time, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	q := `{"size":100,"query":{"bool":{"filter":[{"term":{"drift":true}},{"term":{"model.name":"support"}}]}}}`
	var seen []string
	for {
		http.Post(url+"/triage-drift-*/_refresh", "application/json", nil)
		resp, err := http.Post(url+"/triage-drift-*/_search", "application/json", strings.NewReader(q))
		if err == nil {
			var r struct {
				Hits struct {
					Hits []struct {
						Source schemas.DriftWindow `json:"_source"`
					} `json:"hits"`
				} `json:"hits"`
			}
			json.NewDecoder(resp.Body).Decode(&r)
			resp.Body.Close()
			seen = seen[:0]
			for _, h := range r.Hits.Hits {
				if h.Source.Window.End.Equal(end) {
					return
				}
				seen = append(seen, h.Source.Window.End.Format(time.RFC3339Nano))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no drift document for the window ending %v in triage-drift-* (drifted windows there end at %v)", end, seen)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitMetric polls a Prometheus endpoint until the series reaches min.
func waitMetric(t *testing.T, url, series string, min float64, timeout time.Duration) float64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if v, ok := scrape(url, series); ok && v >= min {
			return v
		}
		if time.Now().After(deadline) {
			v, _ := scrape(url, series)
			t.Fatalf("%s = %v, want >= %v within %v", series, v, min, timeout)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func scrape(url, series string) (float64, bool) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}
