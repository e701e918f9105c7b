package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/triage-ml/triage/gateway"
	"github.com/triage-ml/triage/trainer"
)

// gwSyncBuf is a bytes.Buffer safe for a writer goroutine and a reader.
type gwSyncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *gwSyncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *gwSyncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gwRun runs commands as `triage` would.
func gwRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return run(ctx, args, stdout, stderr)
}

func TestAPIKeyCommands(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.yaml")
	var out, errOut bytes.Buffer
	if err := gwRun(context.Background(), []string{"apikey", "add", "--file", file, "--name", "bot", "--scopes", "predict,feedback", "--rate", "5", "--burst", "9"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	secret := strings.TrimSpace(out.String())
	if !regexp.MustCompile(`^trg_[A-Za-z0-9_-]{43}$`).MatchString(secret) {
		t.Fatalf("secret %q", secret)
	}
	if !strings.Contains(errOut.String(), "shown only now") {
		t.Errorf("stderr: %s", errOut.String())
	}
	st, err := os.Stat(file)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keys file: %v %v", err, st)
	}
	raw, _ := os.ReadFile(file)
	if strings.Contains(string(raw), secret) {
		t.Fatal("secret stored in the keys file")
	}
	out.Reset()
	if err := gwRun(context.Background(), []string{"apikey", "list", "--file", file}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var listed struct {
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
		Rate   float64  `json:"rate"`
		Burst  int      `json:"burst"`
	}
	if err := json.Unmarshal(out.Bytes(), &listed); err != nil || listed.Name != "bot" || listed.Rate != 5 || listed.Burst != 9 || len(listed.Scopes) != 2 {
		t.Errorf("list: %v %s", err, out.String())
	}
	if strings.Contains(out.String(), "hash") || strings.Contains(out.String(), "salt") {
		t.Errorf("list shows hashes: %s", out.String())
	}
	for _, args := range [][]string{
		{"apikey", "add", "--file", file, "--name", "bot", "--scopes", "predict"},    // duplicate
		{"apikey", "add", "--file", file, "--name", "x", "--scopes", "predict,root"}, // unknown scope
		{"apikey", "add", "--file", file, "--name", "y"},                             // no scopes
		{"apikey", "add", "--file", file, "--name", "z", "--scopes", "admin", "--rate", "-1"},
	} {
		if err := gwRun(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("%v succeeded", args)
		}
	}
}

// TestGatewayFollowsRegistry runs the gateway role on a registry, without
// Kafka (the registry is re-read every 200 ms): it serves the champion,
// follows a promotion and a rollback, refuses a corrupt version at the
// registry, and keeps serving when a corrupt version gets past it.
func TestGatewayFollowsRegistry(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "tickets.csv")
	var b strings.Builder
	b.WriteString("text,label\n")
	words := map[string][]string{"billing": {"invoice", "refund", "charge"}, "shipping": {"parcel", "courier", "tracking"}}
	for i := range 60 {
		l := []string{"billing", "shipping"}[i%2]
		b.WriteString(words[l][i%3] + " " + words[l][(i+1)%3] + " please," + l + "\n")
	}
	os.WriteFile(data, []byte(b.String()), 0o644)
	for i, name := range []string{"a", "b", "c"} {
		if _, err := trainer.Train(context.Background(), trainer.Options{DataPath: data, OutDir: filepath.Join(dir, name), Seed: uint64(i + 1), MaxEpochs: 3}); err != nil {
			t.Fatal(err)
		}
	}
	reg := filepath.Join(dir, "registry")
	models := func(args ...string) (string, error) {
		var out, errb bytes.Buffer
		err := gwRun(context.Background(), append(args, "--registry", reg, "--updates-topic", "", "--log-level", "error"), &out, &errb)
		if err != nil {
			return errb.String(), err
		}
		return out.String(), nil
	}
	mustModels := func(args ...string) string {
		t.Helper()
		out, err := models(args...)
		if err != nil {
			t.Fatalf("triage %v: %v %s", args, err, out)
		}
		return out
	}
	mustModels("models", "register", "support", filepath.Join(dir, "a"), "--promote")
	mustModels("models", "register", "support", filepath.Join(dir, "b"))
	mustModels("models", "register", "support", filepath.Join(dir, "c"))

	keys := filepath.Join(dir, "keys.json")
	secret, err := gateway.AddKey(keys, "tester", []string{"predict", "admin"}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Without keys the gateway refuses to start.
	err = gwRun(context.Background(), []string{"gateway", "--registry", reg}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--api-keys-file") {
		t.Fatalf("no keys: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := &gwSyncBuf{}, &gwSyncBuf{}
	done := make(chan error, 1)
	t.Setenv("TRIAGE_DYNAMIC_BATCH_WAIT", "2ms") // flags through the environment work too
	go func() {
		done <- gwRun(ctx, []string{"gateway", "--http-addr", "127.0.0.1:0", "--api-keys-file", keys, "--registry", reg,
			"--updates-topic", "", "--reconcile-interval", "200ms", "--feedback-topic", "", "--train-requests-topic", "",
			"--metrics-addr", "", "--datasets", dir}, stdout, stderr)
	}()
	addrRE := regexp.MustCompile(`gateway http://(127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == ""; {
		select {
		case err := <-done:
			t.Fatalf("gateway exited: %v\n%s", err, stderr.String())
		default:
		}
		if m := addrRE.FindStringSubmatch(stdout.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no ready line: %q\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	predict := func() gateway.PredictResponse {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/predict", strings.NewReader(`{"text":"where is my parcel, courier tracking"}`))
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var pr gateway.PredictResponse
		json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		if resp.StatusCode != 200 || len(pr.Predictions) != 1 || pr.Predictions[0].Label != "shipping" || pr.Predictions[0].Model.Name != "support" {
			t.Fatalf("predict: %d %+v", resp.StatusCode, pr)
		}
		return pr
	}
	waitVersion := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			v := predict().Predictions[0].Model.Version
			if v == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("gateway serves %s, want %s within 5s", v, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitVersion("v1")
	mustModels("models", "promote", "support", "v2", "--reason", "better")
	waitVersion("v2")
	mustModels("models", "rollback", "support")
	waitVersion("v1")

	// GET /v1/models lists versions and aliases from the registry.
	req, _ := http.NewRequest("GET", "http://"+addr+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ml gateway.ModelList
	json.NewDecoder(resp.Body).Decode(&ml)
	resp.Body.Close()
	if len(ml.Models) != 1 || ml.Models[0].Aliases["champion"] != "v1" || len(ml.Models[0].Versions) != 3 {
		t.Fatalf("GET /v1/models: %+v", ml)
	}
	// POST /v1/models/support/promote (admin) moves the champion too.
	req, _ = http.NewRequest("POST", "http://"+addr+"/v1/models/support/promote", strings.NewReader(`{"version":"v2","reason":"api"}`))
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST promote: %v %v", err, resp)
	}
	resp.Body.Close()
	waitVersion("v2")

	// A corrupt version (truncated model.onnx) is refused by the registry...
	v3 := filepath.Join(reg, "support", "v3", "model.onnx")
	if err := os.Truncate(v3, 100); err != nil {
		t.Fatal(err)
	}
	if out, err := models("models", "promote", "support", "v3"); err == nil {
		t.Fatalf("corrupt v3 promoted: %s", out)
	} else if !strings.Contains(err.Error(), "v3") {
		t.Errorf("refusal does not say why: %v", err)
	}
	// ...and when forced past it, not swapped in: v2 keeps serving, and the
	// failure shows in the registry (triage models show) and the log.
	mustModels("models", "promote", "support", "v3", "--no-verify")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(mustModels("models", "show", "support"), "FAILED") {
		if time.Now().After(deadline) {
			t.Fatalf("no load failure in models show:\n%s", mustModels("models", "show", "support"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := predict().Predictions[0].Model.Version; v != "v2" {
		t.Errorf("after a corrupt promotion the gateway serves %s, want v2", v)
	}
	if !strings.Contains(stderr.String(), "failed to load") {
		t.Errorf("no load failure in the log")
	}
	req, _ = http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `triage_serving_load_failures_total{model="support"} 1`) {
		t.Errorf("no load failure in /metrics:\n%s", grepLines(string(metrics), "triage_serving"))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gateway: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("gateway did not stop")
	}
}

// grepLines keeps the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
