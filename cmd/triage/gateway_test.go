package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

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

// gwRun runs the gateway and apikey commands as `triage` would.
func gwRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := &ffcli.Command{Name: "triage", Subcommands: []*ffcli.Command{gatewayCommand(stdout, stderr), apikeyCommand(stdout, stderr)},
		Exec: func(context.Context, []string) error { return flag.ErrHelp }}
	if err := root.Parse(withEnv(root, args, os.Getenv)); err != nil {
		return err
	}
	return root.Run(ctx)
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

func TestGatewayCommandServes(t *testing.T) {
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
	modelsDir := filepath.Join(dir, "models")
	if _, err := trainer.Train(context.Background(), trainer.Options{DataPath: data, OutDir: filepath.Join(modelsDir, "support"), Seed: 1, MaxEpochs: 3}); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys.json")
	secret, err := gateway.AddKey(keys, "tester", []string{"predict", "admin"}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}

	// Without keys the gateway refuses to start.
	err = gwRun(context.Background(), []string{"gateway", "--models-dir", modelsDir}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--api-keys-file") {
		t.Fatalf("no keys: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &gwSyncBuf{}
	done := make(chan error, 1)
	t.Setenv("TRIAGE_DYNAMIC_BATCH_WAIT", "2ms") // flags through the environment work too
	go func() {
		done <- gwRun(ctx, []string{"gateway", "--http-addr", "127.0.0.1:0", "--api-keys-file", keys, "--models-dir", modelsDir,
			"--data-root", dir, "--log-level", "error"}, stdout, io.Discard)
	}()
	addrRE := regexp.MustCompile(`http://(127\.0\.0\.1:\d+)/`)
	var addr string
	for deadline := time.Now().Add(20 * time.Second); addr == ""; {
		select {
		case err := <-done:
			t.Fatalf("gateway exited: %v", err)
		default:
		}
		if m := addrRE.FindStringSubmatch(stdout.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no listening line: %q", stdout.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
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
	resp, err = http.Get("http://" + addr + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", err, resp)
	}
	resp.Body.Close()
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
