//go:build prometheus

package livetest

// The live monitoring test. It
//
//  1. builds bin/triage and starts `triage dev` on free loopback ports, its
//     default models trained on a fifth of each training set (~10-20 s instead
//     of ~90 s; their quality does not matter here);
//  2. starts a real Prometheus (scripts/prometheus-local) with the committed
//     monitoring/prometheus/prometheus.yml, its scrape jobs replaced by one
//     job "triage-dev" on the dev metrics listener and every interval set to
//     1 s, so the committed rule files load and evaluate for real;
//  3. drives traffic: REST predictions, 400/401/404 answers, a burst that the
//     rate limiter answers 429, Kafka inputs on both topics with a few
//     malformed records that become dead letters; the monitor (windows of
//     100 predictions) closes windows on them;
//  4. waits until Prometheus has scraped the processed state and has enough
//     samples for every window (1m for panels, 5m rules read what exists);
//  5. runs every Grafana panel expression, every dashboard variable query,
//     every recording rule (its expression and its recorded series) and every
//     alert expression through /api/v1/query, and prints a table of
//     expression -> series count.
//
// Each must parse and return at least one series. One documented exception:
// an alert expression that returns nothing in a healthy run (its
//     thresholds are not met) is evaluated again with every comparison against
//     a number removed ("x > 0.05 and y > 0.02" -> "x and y"); that must return
//     a series. All thresholds go, not only the last, because the burn-rate
//     alerts compare in each of four terms.
//
// Grafana variables are replaced by grafana.ExampleValues ($job=triage-dev,
// $model=support, $__rate_interval=1m, ...).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v2"

	"github.com/triage-ml/triage/internal/estest"
	"github.com/triage-ml/triage/monitoring/grafana"
)

// jobName is the scrape job of triage dev here; grafana.ExampleValues uses it
// for $job.
const jobName = "triage-dev"

func TestMonitoringAgainstLivePrometheus(t *testing.T) {
	began := time.Now()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()

	bin := buildTriage(t, root)
	ort := onnxRuntime(t, root)
	datasets := smallDatasets(t, root, filepath.Join(work, "datasets"))
	esURL := startElasticsearch(t, root, filepath.Join(work, "es"))
	dev := startDev(t, root, bin, ort, datasets, filepath.Join(work, "dev"), esURL)
	t.Logf("triage dev ready at %s (gateway %s, metrics %s)", time.Since(began).Round(time.Second), dev.gateway, dev.metrics)

	prom := startPrometheus(t, root, work, dev.metricsAddr)
	waitFor(t, 30*time.Second, "Prometheus's first scrape of triage dev", func() (bool, error) {
		n, err := prom.seriesCount(fmt.Sprintf(`up{job=%q} == 1`, jobName))
		return n == 1, err
	})

	driveTraffic(t, bin, dev)
	waitFor(t, 60*time.Second, "the consumer to handle every produced record", func() (bool, error) {
		v, err := dev.metricSum("triage_consumer_records_total")
		return v >= 2*producedPerTopic, err
	})
	// The monitor's gauges exist once a window closed (100 predictions).
	waitFor(t, 60*time.Second, "the monitor to close windows", func() (bool, error) {
		v, err := dev.metricSum("triage_monitor_windows_total")
		return v >= 2, err
	})
	// Scraped after processing, and enough samples in the last minute for
	// every rate() over $__rate_interval (1m) and every deriv().
	waitFor(t, 60*time.Second, "Prometheus to scrape the processed records", func() (bool, error) {
		n, err := prom.seriesCount(fmt.Sprintf(`sum(triage_consumer_records_total{job=%q}) >= %d and on() sum(triage_monitor_windows_total{job=%q}) >= 2`,
			jobName, 2*producedPerTopic, jobName))
		return n == 1, err
	})
	waitFor(t, 60*time.Second, "15 scrapes within the last minute", func() (bool, error) {
		n, err := prom.seriesCount(fmt.Sprintf(`count_over_time(up{job=%q}[1m]) >= 15`, jobName))
		return n == 1, err
	})
	time.Sleep(3 * time.Second) // a few rule evaluations on the final state

	exported := dev.exportedNames(t)
	rules := loadRules(t, root)
	checkRulesLoaded(t, prom, rules)

	ev := &evaluator{prom: prom, exported: exported, records: map[string]string{}}
	for _, r := range rules {
		if r.Record != "" {
			ev.records[r.Record] = r.Expr
		}
	}
	values := grafana.ExampleValues()
	values["job"] = jobName

	exprs, err := grafana.Expressions()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range exprs {
		c, err := grafana.Concrete(e.Expr, values)
		if err != nil {
			t.Fatalf("%s/%s: %v", e.Dashboard, e.Panel, err)
		}
		ev.query("panel", fmt.Sprintf("%s / %s / %s", e.Dashboard, e.Panel, e.RefID), c)
	}
	vars, err := grafana.Variables()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vars {
		c, err := grafana.Concrete(v.Query, values)
		if err != nil {
			t.Fatalf("%s variable %s: %v", v.Dashboard, v.Name, err)
		}
		ev.labelValues(fmt.Sprintf("%s / $%s", v.Dashboard, v.Name), c)
	}
	for _, r := range rules {
		switch {
		case r.Record != "":
			ev.query("record", r.Record, r.Expr)
			ev.query("recorded", r.Record, r.Record)
		case r.Alert != "":
			ev.alert(r.Alert, r.Expr)
		}
	}

	t.Log("\n" + ev.table())
	checkTheChecker(t, ev)
	if firing, err := prom.alerts(); err != nil {
		t.Errorf("read ALERTS: %v", err)
	} else {
		// Reported, not failed: this run deliberately sends 4xx, 429s and
		// dead letters, below every alert's threshold.
		t.Logf("alerts pending or firing at the end of the healthy run: %v", firing)
	}
	var failed []string
	for _, r := range ev.rows {
		if r.status == statusFail {
			failed = append(failed, fmt.Sprintf("%s %s: %s\n    %s", r.kind, r.name, r.note, r.expr))
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d expressions failed:\n  %s", len(failed), strings.Join(failed, "\n  "))
	}
	t.Logf("%d expressions checked in %s", len(ev.rows), time.Since(began).Round(time.Second))
}

// ---------------------------------------------------------------- triage dev

func buildTriage(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(root, "bin", "triage")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/triage")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -o bin/triage ./cmd/triage: %v\n%s", err, out)
	}
	t.Logf("built bin/triage in %s", time.Since(start).Round(100*time.Millisecond))
	return bin
}

func onnxRuntime(t *testing.T, root string) string {
	t.Helper()
	if lib := os.Getenv("ONNXRUNTIME_LIB"); lib != "" {
		return lib
	}
	cmd := exec.Command("bash", "scripts/fetch-onnxruntime.sh")
	cmd.Dir = root
	cmd.Stderr = io.Discard
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/fetch-onnxruntime.sh: %v", err)
	}
	return lastLine(out)
}

// smallDatasets writes every fifth row of the default models' training sets
// (Banking77 is sorted by label, so every class keeps its share) into dir:
// bootstrap training then takes seconds.
func smallDatasets(t *testing.T, root, dir string) string {
	t.Helper()
	src := os.Getenv("TRIAGE_DATA_DIR")
	if src == "" {
		src = filepath.Join(root, "..", "shared", "data")
	}
	for _, f := range []string{"banking77/train.csv", "movie-reviews/train.csv"} {
		in, err := os.Open(filepath.Join(src, f))
		if err != nil {
			t.Fatalf("training data (TRIAGE_DATA_DIR): %v", err)
		}
		rows, err := csv.NewReader(in).ReadAll()
		in.Close()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		kept := [][]string{rows[0]}
		for i, r := range rows[1:] {
			if i%5 == 0 {
				kept = append(kept, r)
			}
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		w := csv.NewWriter(out)
		if err := w.WriteAll(kept); err != nil {
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type devServer struct {
	kafka, gateway, metrics, metricsAddr, key string
}

// startElasticsearch runs a real node (scripts/elasticsearch-local) for the
// test's lifetime and returns its URL.
func startElasticsearch(t *testing.T, root, dir string) string {
	t.Helper()
	url, err := estest.Run(root, "start", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { estest.Run(root, "stop", "--dir", dir) })
	return url
}

func startDev(t *testing.T, root, bin, ort, datasets, dir, esURL string) *devServer {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d := &devServer{
		kafka:       freeAddr(t),
		gateway:     "http://" + freeAddr(t),
		metricsAddr: freeAddr(t),
	}
	d.metrics = "http://" + d.metricsAddr + "/metrics"
	logPath := filepath.Join(dir, "dev.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// --rate/--burst 20: low enough that a burst of concurrent requests is
	// answered 429 (triage_gateway_rate_limited_total gets a series).
	// --monitor-window-count 100: the monitor closes windows (and sets its
	// gauges) within the test's few hundred records, not after 500 or 1m.
	cmd := exec.Command(bin, "dev",
		"--data-dir", filepath.Join(dir, "data"),
		"--datasets", datasets,
		"--kafka-addr", d.kafka,
		"--http-addr", strings.TrimPrefix(d.gateway, "http://"),
		"--metrics-addr", d.metricsAddr,
		"--rate", "20", "--burst", "20",
		"--monitor-window-count", "100",
		// A real node, so the shipping metrics have series too.
		"--elasticsearch-url", esURL)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "ONNXRUNTIME_LIB="+ort)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			t.Errorf("triage dev did not stop within 20 s of SIGTERM; killing it")
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			t.Logf("last lines of triage dev's log:\n%s", tail(logPath, 30))
		}
	})
	deadline := time.After(180 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if bytes.Contains(b, []byte("triage dev ready")) {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("triage dev exited before it was ready (%v):\n%s", err, tail(logPath, 30))
		case <-deadline:
			t.Fatalf("triage dev not ready within 180 s:\n%s", tail(logPath, 30))
		case <-time.After(250 * time.Millisecond):
		}
	}
	key, err := os.ReadFile(filepath.Join(dir, "data", "dev-api-key"))
	if err != nil {
		t.Fatalf("dev API key: %v", err)
	}
	d.key = strings.TrimSpace(string(key))
	return d
}

// exportedNames returns the sample names triage dev's /metrics exposes now
// (histograms as their _bucket, _sum and _count).
func (d *devServer) exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	b, err := httpGet(d.metrics)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// metricSum adds up every sample of one name on triage dev's /metrics.
func (d *devServer) metricSum(name string) (float64, error) {
	b, err := httpGet(d.metrics)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %w", line, err)
		}
		sum += v
	}
	return sum, nil
}

// ---------------------------------------------------------------- traffic

const producedPerTopic = 300

func driveTraffic(t *testing.T, bin string, d *devServer) {
	t.Helper()
	var wg sync.WaitGroup
	// Kafka inputs on both topics, 2% malformed (dead letters: invalid JSON,
	// schema violations, ...), below TriageDeadLetterRateHigh's 5%.
	for _, topic := range []string{"triage.support-queries", "triage.reviews"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(bin, "produce", "--brokers", d.kafka, "--topic", topic,
				"--synthetic", "--count", strconv.Itoa(producedPerTopic), "--rate", "100",
				"--bad-ratio", "0.02", "--progress=false", "--log-level", "warn").CombinedOutput()
			if err != nil {
				t.Errorf("triage produce --topic %s: %v\n%s", topic, err, out)
				return
			}
			t.Logf("produce %s: %s", topic, lastLine(out))
		}()
	}

	var mu sync.Mutex
	codes := map[int]int{}
	do := func(method, path, key, body string) {
		code, err := request(d.gateway, method, path, key, body)
		if err != nil {
			t.Errorf("%s %s: %v", method, path, err)
			return
		}
		mu.Lock()
		codes[code]++
		mu.Unlock()
	}

	// A burst beyond the burst of 20: some requests are answered 429.
	var burst sync.WaitGroup
	for range 60 {
		burst.Add(1)
		go func() { defer burst.Done(); do("GET", "/v1/models", d.key, "") }()
	}
	burst.Wait()
	time.Sleep(1500 * time.Millisecond) // the bucket refills

	// Paced below the 20/s limit: predictions on both models (single texts
	// and batches), other routes, and client errors.
	texts := []string{"my card has not arrived yet", "how do I top up by bank transfer?",
		"a gorgeous, moving film", "dull and far too long", "why was I charged a fee for my transfer?"}
	tick := time.NewTicker(70 * time.Millisecond)
	defer tick.Stop()
	for i := range 80 {
		<-tick.C
		model := []string{"support", "reviews"}[i%2]
		switch {
		case i%10 == 3:
			do("POST", "/v1/predict", "", `{"model":"support","text":"no key"}`) // 401
		case i%10 == 5:
			do("POST", "/v1/predict", d.key, `{"model":`) // 400
		case i%10 == 7:
			do("POST", "/v1/predict", d.key, `{"model":"no-such-model","text":"x"}`) // 404
		case i%10 == 9:
			b, _ := json.Marshal(map[string]any{"model": model, "texts": texts})
			do("POST", "/v1/predict", d.key, string(b))
		case i%20 == 1:
			do("GET", []string{"/healthz", "/readyz", "/openapi.json", "/v1/models/support"}[i/20%4], d.key, "")
		default:
			b, _ := json.Marshal(map[string]any{"model": model, "text": texts[i%len(texts)]})
			do("POST", "/v1/predict", d.key, string(b))
		}
	}
	wg.Wait()
	t.Logf("REST answers by status code: %v", codes)
	for _, c := range []int{200, 400, 401, 404, 429} {
		if codes[c] == 0 {
			t.Errorf("traffic produced no %d answer; panels and rules on it would see nothing", c)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func request(base, method, path, key, body string) (int, error) {
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// ---------------------------------------------------------------- prometheus

type promServer struct {
	url string
}

// startPrometheus runs scripts/prometheus-local with the committed config,
// its scrape jobs replaced by one job on the dev metrics listener (triage dev
// serves every role there; several jobs would double every series), every
// interval 1 s, and the committed rule files by absolute path.
func startPrometheus(t *testing.T, root, work, target string) *promServer {
	t.Helper()
	committed := filepath.Join(root, "monitoring", "prometheus", "prometheus.yml")
	b, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	var cfg yaml.MapSlice
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("%s: %v", committed, err)
	}
	sawRules := false
	for i, item := range cfg {
		switch item.Key {
		case "global":
			cfg[i].Value = yaml.MapSlice{
				{Key: "scrape_interval", Value: "1s"},
				{Key: "scrape_timeout", Value: "1s"},
				{Key: "evaluation_interval", Value: "1s"},
			}
		case "rule_files":
			files, ok := item.Value.([]any)
			if !ok || len(files) == 0 {
				t.Fatalf("%s: rule_files is not a list of files", committed)
			}
			abs := make([]string, 0, len(files))
			for _, f := range files {
				abs = append(abs, filepath.Join(filepath.Dir(committed), fmt.Sprint(f)))
			}
			cfg[i].Value = abs
			sawRules = true
		case "scrape_configs":
			cfg[i].Value = []yaml.MapSlice{{
				{Key: "job_name", Value: jobName},
				{Key: "static_configs", Value: []yaml.MapSlice{{{Key: "targets", Value: []string{target}}}}},
			}}
		}
	}
	if !sawRules {
		t.Fatalf("%s names no rule_files", committed)
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(work, "prometheus.yml")
	if err := os.WriteFile(cfgPath, out, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(work, "prometheus")
	script := filepath.Join(root, "scripts", "prometheus-local")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(script, "start", "--dir", dir, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("scripts/prometheus-local start: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last lines of Prometheus's log:\n%s", tail(filepath.Join(dir, "prometheus.log"), 20))
		}
		stop := exec.Command(script, "stop", "--dir", dir)
		if out, err := stop.CombinedOutput(); err != nil {
			t.Errorf("scripts/prometheus-local stop: %v\n%s", err, out)
		}
	})
	p := &promServer{url: lastLine(stdout.Bytes())}
	t.Logf("Prometheus %s scraping %s every 1 s", p.url, target)
	return p
}

type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Warnings  []string        `json:"warnings"`
}

func (p *promServer) get(path string, params url.Values) (json.RawMessage, error) {
	b, err := httpGetStatus(p.url + path + "?" + params.Encode())
	if err != nil && len(b) == 0 {
		return nil, err
	}
	var r apiResponse
	if jerr := json.Unmarshal(b, &r); jerr != nil {
		return nil, fmt.Errorf("%s: %v (%s)", path, jerr, bytes.TrimSpace(b))
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// seriesCount runs an instant query and counts the series (or 1 for a
// scalar or string result).
func (p *promServer) seriesCount(expr string) (int, error) {
	data, err := p.get("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return 0, err
	}
	var res struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return 0, err
	}
	switch res.ResultType {
	case "vector", "matrix":
		var series []json.RawMessage
		if err := json.Unmarshal(res.Result, &series); err != nil {
			return 0, err
		}
		return len(series), nil
	default:
		return 1, nil
	}
}

func (p *promServer) alerts() ([]string, error) {
	data, err := p.get("/api/v1/alerts", nil)
	if err != nil {
		return nil, err
	}
	var res struct {
		Alerts []struct {
			Labels map[string]string `json:"labels"`
			State  string            `json:"state"`
		} `json:"alerts"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, err
	}
	out := []string{}
	for _, a := range res.Alerts {
		var ls []string
		for k, v := range a.Labels {
			if k != "alertname" && k != "severity" && k != "job" {
				ls = append(ls, k+"="+v)
			}
		}
		sort.Strings(ls)
		out = append(out, fmt.Sprintf("%s{%s} %s", a.Labels["alertname"], strings.Join(ls, ","), a.State))
	}
	sort.Strings(out)
	return out, nil
}

type ruleDef struct {
	Record string `yaml:"record"`
	Alert  string `yaml:"alert"`
	Expr   string `yaml:"expr"`
}

func loadRules(t *testing.T, root string) []ruleDef {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(root, "monitoring", "prometheus", "rules", "*.yml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no rule files under monitoring/prometheus/rules (%v)", err)
	}
	var out []ruleDef
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var f struct {
			Groups []struct {
				Rules []ruleDef `yaml:"rules"`
			} `yaml:"groups"`
		}
		if err := yaml.Unmarshal(b, &f); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, g := range f.Groups {
			out = append(out, g.Rules...)
		}
	}
	return out
}

// checkRulesLoaded compares Prometheus's loaded rules with the files: every
// rule is there and its last evaluation had no error.
func checkRulesLoaded(t *testing.T, p *promServer, rules []ruleDef) {
	t.Helper()
	data, err := p.get("/api/v1/rules", nil)
	if err != nil {
		t.Fatal(err)
	}
	var res struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	loaded := map[string]bool{}
	for _, g := range res.Groups {
		for _, r := range g.Rules {
			loaded[r.Name] = true
			if r.Health != "ok" || r.LastError != "" {
				t.Errorf("rule %s (group %s): health %q, last error %q", r.Name, g.Name, r.Health, r.LastError)
			}
		}
	}
	for _, r := range rules {
		if name := r.Record + r.Alert; !loaded[name] {
			t.Errorf("rule %s is in the rule files but Prometheus did not load it", name)
		}
	}
}

// ---------------------------------------------------------------- evaluation

const (
	statusOK   = "ok"
	statusFail = "FAIL"
)

type row struct {
	kind, name, expr string
	series           int
	status, note     string
}

type evaluator struct {
	prom     *promServer
	exported map[string]bool   // sample names triage dev exports
	records  map[string]string // recording rule name -> expression
	rows     []row
}

func (e *evaluator) query(kind, name, expr string) {
	n, err := e.prom.seriesCount(expr)
	e.add(kind, name, expr, n, err)
}

var labelValuesCall = regexp.MustCompile(`^\s*label_values\((.+),\s*(\w+)\)\s*$`)

// labelValues runs a Grafana label_values(selector, label) variable query
// the way Grafana does: the series API's label values, matched by selector.
func (e *evaluator) labelValues(name, query string) {
	m := labelValuesCall.FindStringSubmatch(query)
	if m == nil {
		e.rows = append(e.rows, row{kind: "variable", name: name, expr: query, status: statusFail,
			note: "not a label_values(selector, label) query"})
		return
	}
	data, err := e.prom.get("/api/v1/label/"+m[2]+"/values", url.Values{"match[]": {m[1]}})
	var vals []string
	if err == nil {
		err = json.Unmarshal(data, &vals)
	}
	e.add("variable", name, query, len(vals), err)
}

// alert runs an alert's expression; when a healthy run gives it no series,
// it runs it again without its thresholds (see the file comment).
func (e *evaluator) alert(name, expr string) {
	n, err := e.prom.seriesCount(expr)
	if err != nil || n > 0 {
		e.add("alert", name, expr, n, err)
		return
	}
	bare := stripThresholds(expr)
	if bare == expr {
		e.add("alert", name, expr, n, err)
		return
	}
	n, err = e.prom.seriesCount(bare)
	e.add("alert", name+" (thresholds removed)", bare, n, err)
}

func (e *evaluator) add(kind, name, expr string, n int, err error) {
	r := row{kind: kind, name: name, expr: expr, series: n, status: statusOK}
	switch {
	case err != nil:
		r.status, r.note = statusFail, err.Error()
	case n == 0:
		absent := e.absentMetrics(expr, map[string]bool{})
		switch {
		case len(absent) > 0:
			r.status, r.note = statusFail, "no series; triage dev does not export "+strings.Join(absent, ", ")
		default:
			r.status, r.note = statusFail, "no series, though triage dev exports every metric it reads"
		}
	}
	e.rows = append(e.rows, r)
}

var (
	quoted     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	identifier = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// absentMetrics lists the triage_* metrics expr reads, through recording
// rules, that triage dev does not export.
func (e *evaluator) absentMetrics(expr string, seen map[string]bool) []string {
	var out []string
	for _, id := range identifier.FindAllString(quoted.ReplaceAllString(expr, `""`), -1) {
		if seen[id] {
			continue
		}
		seen[id] = true
		if rec, ok := e.records[id]; ok {
			out = append(out, e.absentMetrics(rec, seen)...)
			continue
		}
		if strings.HasPrefix(id, "triage_") && !e.exported[id] {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// A comparison against a number: "> 0.05", "== 1", "> bool 0",
// "> (14.4 * 0.01)". Label matchers compare with strings, never numbers, so
// they are left alone.
var threshold = regexp.MustCompile(`\s*(?:==|!=|>=|<=|>|<)\s*(?:bool\s+)?(?:\(\s*[0-9.eE+\-*/ ]+\)|[0-9][0-9.eE+\-]*)`)

// stripThresholds removes every comparison against a number from expr.
func stripThresholds(expr string) string {
	return threshold.ReplaceAllString(expr, "")
}

func (e *evaluator) table() string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "KIND\tNAME\tSERIES\tSTATUS\tEXPRESSION")
	for _, r := range e.rows {
		status := r.status
		if r.note != "" {
			status += ": " + r.note
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", r.kind, r.name, r.series, status, oneLine(r.expr, 140))
	}
	w.Flush()
	counts := map[string]int{}
	for _, r := range e.rows {
		counts[r.status]++
	}
	fmt.Fprintf(&b, "%d expressions: %d ok, %d failed\n", len(e.rows), counts[statusOK], counts[statusFail])
	return b.String()
}

// checkTheChecker proves the evaluation can fail: a syntax error, a selector
// matching nothing and a metric nobody exports fail; thresholds are stripped
// as documented.
func checkTheChecker(t *testing.T, live *evaluator) {
	t.Helper()
	ev := &evaluator{prom: live.prom, exported: live.exported, records: live.records}
	ev.query("probe", "syntax error", `sum(rate(triage_gateway_requests_total[1m])`)
	ev.query("probe", "no matching series", `triage_gateway_requests_total{job="no-such-job"}`)
	ev.query("probe", "unknown metric", `triage_gateway_no_such_metric_total`)
	want := []string{statusFail, statusFail, statusFail}
	for i, r := range ev.rows {
		if r.status != want[i] {
			t.Errorf("checker self-test %q: status %s (%s), want %s", r.name, r.status, r.note, want[i])
		}
	}
	for in, want := range map[string]string{
		`up{job=~"triage.*"} == 0`:                            `up{job=~"triage.*"}`,
		"a > 0.05\nand\nb > 0.02":                             "a\nand\nb",
		`(x > (14.4 * 0.01) and y > (6 * 0.01)) or z <= 1e-3`: `(x and y) or z`,
		`x{code!="500", le="0.25"} > bool 0`:                  `x{code!="500", le="0.25"}`,
		`histogram_quantile(0.99, rate(x[5m])) * 60`:          `histogram_quantile(0.99, rate(x[5m])) * 60`,
	} {
		if got := stripThresholds(in); got != want {
			t.Errorf("stripThresholds(%q) = %q, want %q", in, got, want)
		}
	}
}

// ---------------------------------------------------------------- helpers

func waitFor(t *testing.T, limit time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waited %s for %s (last error: %v)", limit, what, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(u string) ([]byte, error) {
	b, err := httpGetStatus(u)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// httpGetStatus returns the body even on a non-2xx status (Prometheus
// explains a bad query in it), with an error for the status.
func httpGetStatus(u string) ([]byte, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return b, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return b, nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = s[:max-3] + "..."
	}
	return s
}
