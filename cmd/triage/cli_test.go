package main

// End-to-end tests of the CLI contract: train -> bundle -> eval/predict
// through ONNX Runtime, flag/env/config precedence, and error messages that
// name the file and line. Commands run in-process through run(); a few run
// the real main() in a child process to pin exit codes and the stderr prefix.
//
// ONNX Runtime is loaded once per process (inference.InitORT), so every
// in-process command uses the default library discovery; only the bad-library
// test passes --ort-lib, with a path that fails before anything is loaded.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/internal/minilm"
	"github.com/triage-ml/triage/trainer"
)

// execMainEnv makes the test binary act as the triage binary (see TestMain).
const execMainEnv = "CLI_TEST_EXEC_TRIAGE_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(execMainEnv) == "1" {
		main() // os.Args[1:] are the triage arguments
		os.Exit(0)
	}
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

// --- synthetic data -------------------------------------------------------

var topicWords = map[string][]string{
	"billing":  {"invoice", "charged", "refund", "payment", "bill", "overcharged", "receipt"},
	"shipping": {"parcel", "delivery", "courier", "tracking", "shipped", "arrive", "package"},
	"account":  {"password", "login", "locked", "username", "reset", "signin", "2fa"},
}

var queues = []string{"account", "billing", "shipping"} // sorted, as the model orders them

// syntheticCSV writes 3 labels x 60 rows: each text mixes words of its own
// queue with shared filler; extra columns and quoted commas keep the CSV
// reader honest. Columns: id,queue,body,channel.
func syntheticCSV(t testing.TB, dir string) string {
	t.Helper()
	filler := []string{"please", "help", "my", "the", "is", "not", "today", "why", "hello", "again"}
	rng := rand.New(rand.NewPCG(3, 4))
	var b strings.Builder
	b.WriteString("id,queue,body,channel\n")
	for i := range 180 {
		q := queues[i%3]
		var ws []string
		for range 7 {
			if rng.IntN(5) < 3 {
				ws = append(ws, topicWords[q][rng.IntN(len(topicWords[q]))])
			} else {
				ws = append(ws, filler[rng.IntN(len(filler))])
			}
		}
		fmt.Fprintf(&b, "%d,%s,\"%s, %s\",email\n", i+1, q, strings.Join(ws[:3], " "), strings.Join(ws[3:], " "))
	}
	return writeFile(t, dir, "tickets.csv", b.String())
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// --- running the CLI ------------------------------------------------------

type result struct {
	stdout, stderr string
	err            error
}

// triage runs the CLI in-process, as main would.
func triage(t testing.TB, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return result{out.String(), errb.String(), err}
}

// mustTriage runs the CLI and fails the test on an error.
func mustTriage(t testing.TB, args ...string) result {
	t.Helper()
	r := triage(t, args...)
	if r.err != nil {
		t.Fatalf("triage %s: %v\nstderr:\n%s", strings.Join(args, " "), r.err, r.stderr)
	}
	return r
}

// wantErr runs the CLI, wants an error, and checks it contains every part.
func wantErr(t testing.TB, parts []string, args ...string) error {
	t.Helper()
	r := triage(t, args...)
	if r.err == nil {
		t.Fatalf("triage %s: succeeded, want an error\nstdout: %s", strings.Join(args, " "), r.stdout)
	}
	for _, p := range parts {
		if !strings.Contains(r.err.Error(), p) {
			t.Errorf("triage %s:\n error %q\n does not contain %q", strings.Join(args, " "), r.err, p)
		}
	}
	if r.stdout != "" {
		t.Errorf("failed command wrote to stdout: %q", r.stdout)
	}
	return r.err
}

// cleanEnv hides TRIAGE_* variables from the environment the tests run in,
// so a developer's shell cannot change what the CLI does here.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, envPrefix+"_") {
			t.Setenv(k, "")
		}
	}
}

// --- one trained model shared by the tests --------------------------------

var (
	fixtureOnce sync.Once
	fixtureDir  string // removed by TestMain
	fixture     struct {
		data, model string
		trainOut    trainOutput
		err         error
	}
)

type trainOutput struct {
	Bundle     string `json:"bundle"`
	Name       string `json:"name"`
	Version    string `json:"version"`
	Labels     int    `json:"labels"`
	Validation struct {
		Accuracy *float64 `json:"accuracy"`
		MacroF1  *float64 `json:"macro_f1"`
		N        int      `json:"n"`
	} `json:"validation"`
	TrainAccuracy float64        `json:"train_accuracy"`
	HyperParams   map[string]any `json:"hyper_params"`
}

// trainedModel trains the shared model once (train is itself under test in
// TestCLITrainEvalPredict, which checks this same output).
func trainedModel(t *testing.T) (data, model string, out trainOutput) {
	t.Helper()
	cleanEnv(t)
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "triage-cli-test-")
		if err != nil {
			fixture.err = err
			return
		}
		fixtureDir = dir
		fixture.data = syntheticCSV(t, dir)
		fixture.model = filepath.Join(dir, "models", "support")
		var stdout, stderr bytes.Buffer
		err = run(context.Background(), []string{"train", "--data", fixture.data, "--text-column", "body",
			"--label-column", "queue", "--out", fixture.model, "--seed", "1"}, &stdout, &stderr)
		if err != nil {
			fixture.err = fmt.Errorf("train: %w\nstderr:\n%s", err, stderr.String())
			return
		}
		if strings.Count(stdout.String(), "\n") != 1 {
			fixture.err = fmt.Errorf("train wrote %q to stdout, want one JSON line", stdout.String())
			return
		}
		if err := json.Unmarshal(stdout.Bytes(), &fixture.trainOut); err != nil {
			fixture.err = fmt.Errorf("train stdout is not JSON: %w: %s", err, stdout.String())
		}
		// Logs go to stderr as JSON lines, never to stdout.
		for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			if !json.Valid([]byte(line)) {
				fixture.err = fmt.Errorf("train stderr line is not a JSON log record: %q", line)
			}
		}
	})
	if fixture.err != nil {
		t.Fatal(fixture.err)
	}
	return fixture.data, fixture.model, fixture.trainOut
}

func copyBundle(t *testing.T, from, to string) string {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
	return to
}

func editJSON(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	edit(doc)
	if raw, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func loadManifest(t *testing.T, dir string) bundle.Manifest {
	t.Helper()
	b, err := bundle.Load(dir)
	if err != nil {
		t.Fatalf("bundle.Load(%s): %v", dir, err)
	}
	return b.Manifest
}

// --- the happy path -------------------------------------------------------

type evalOutput struct {
	N        *int     `json:"n"`
	Accuracy *float64 `json:"accuracy"`
	MacroF1  *float64 `json:"macro_f1"`
	PerClass map[string]struct {
		Precision *float64 `json:"precision"`
		Recall    *float64 `json:"recall"`
		F1        *float64 `json:"f1"`
		Support   *int     `json:"support"`
	} `json:"per_class"`
	Model struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"model"`
	Data  string `json:"data"`
	Split string `json:"split"`
}

// decodeEval wants exactly one JSON object on stdout.
func decodeEval(t *testing.T, stdout string) evalOutput {
	t.Helper()
	if strings.Count(stdout, "\n") != 1 || !strings.HasSuffix(stdout, "\n") {
		t.Fatalf("eval --json wrote %q, want one JSON line", stdout)
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	var e evalOutput
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("eval --json output %q: %v", stdout, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		t.Fatalf("eval --json wrote more than one JSON value: %q", stdout)
	}
	if e.N == nil || e.Accuracy == nil || e.MacroF1 == nil || e.PerClass == nil {
		t.Fatalf("eval --json lacks n/accuracy/macro_f1/per_class: %s", stdout)
	}
	if len(e.PerClass) != len(queues) {
		t.Fatalf("per_class has %d labels, want %v: %s", len(e.PerClass), queues, stdout)
	}
	var sumF1 float64
	for _, q := range queues {
		c, ok := e.PerClass[q]
		if !ok {
			t.Fatalf("per_class lacks %q: %s", q, stdout)
		}
		if c.Precision == nil || c.Recall == nil || c.F1 == nil || c.Support == nil {
			t.Fatalf("per_class[%s] lacks precision/recall/f1/support: %s", q, stdout)
		}
		for _, v := range []float64{*c.Precision, *c.Recall, *c.F1} {
			if v < 0 || v > 1 || math.IsNaN(v) {
				t.Errorf("per_class[%s] value %v outside [0,1]", q, v)
			}
		}
		sumF1 += *c.F1
	}
	if got := sumF1 / 3; math.Abs(got-*e.MacroF1) > 1e-9 {
		t.Errorf("macro_f1 %v is not the mean of the per-class F1s (%v)", *e.MacroF1, got)
	}
	return e
}

type predictLine struct {
	Text       string  `json:"text"`
	Label      string  `json:"label"`
	Confidence float32 `json:"confidence"`
	Scores     []struct {
		Label string  `json:"label"`
		Score float32 `json:"score"`
	} `json:"scores"`
	Model struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"model"`
	Truncated bool `json:"truncated"`
	Abstained bool `json:"abstained"`
}

func decodePredict(t *testing.T, stdout string, want int) []predictLine {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if !strings.HasSuffix(stdout, "\n") || len(lines) != want {
		t.Fatalf("predict wrote %d lines, want %d: %q", len(lines), want, stdout)
	}
	out := make([]predictLine, want)
	for i, l := range lines {
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out[i]); err != nil {
			t.Fatalf("predict line %d %q: %v", i+1, l, err)
		}
	}
	return out
}

func TestCLITrainEvalPredict(t *testing.T) {
	data, model, tr := trainedModel(t)
	man := loadManifest(t, model)

	t.Run("train", func(t *testing.T) {
		for _, f := range []string{bundle.ManifestFile, bundle.ModelFile, bundle.FeaturesFile} {
			if st, err := os.Stat(filepath.Join(model, f)); err != nil || st.Size() == 0 {
				t.Errorf("bundle file %s: %v", f, err)
			}
		}
		if tr.Bundle != model || tr.Name != "support" || tr.Labels != 3 || tr.Version == "" {
			t.Errorf("train output bundle=%q name=%q labels=%d version=%q", tr.Bundle, tr.Name, tr.Labels, tr.Version)
		}
		if tr.Validation.Accuracy == nil || tr.Validation.MacroF1 == nil {
			t.Fatalf("train output has no validation accuracy/macro_f1: %+v", tr)
		}
		// 60 rows per queue, 10% held out per queue: 6 x 3.
		if tr.Validation.N != 18 {
			t.Errorf("validation n = %d, want 18", tr.Validation.N)
		}
		if *tr.Validation.Accuracy < 0.9 {
			t.Errorf("validation accuracy %v on separable data, want >= 0.9", *tr.Validation.Accuracy)
		}
		if _, ok := tr.HyperParams["learning_rate"]; !ok {
			t.Errorf("train output hyper_params %v lacks learning_rate", tr.HyperParams)
		}
		// model.json agrees with what train printed.
		if man.Name != tr.Name || man.Version != tr.Version || !slices.Equal(man.Labels, queues) {
			t.Errorf("model.json name/version/labels %q %q %v vs train output %q %q", man.Name, man.Version, man.Labels, tr.Name, tr.Version)
		}
		if man.Metrics.Validation.Accuracy != *tr.Validation.Accuracy || man.Metrics.Validation.N != tr.Validation.N {
			t.Errorf("model.json validation %+v vs train output %+v", man.Metrics.Validation, tr.Validation)
		}
		trn := man.Training
		if trn.Seed != 1 || trn.TextColumn != "body" || trn.LabelColumn != "queue" || trn.Rows != 180 || trn.ValRows != 18 || trn.TrainRows != 162 || trn.DataPath != data {
			t.Errorf("model.json training = %+v", trn)
		}
	})

	t.Run("eval all", func(t *testing.T) {
		r := mustTriage(t, "eval", "--model", model, "--data", data, "--text-column", "body", "--label-column", "queue", "--json")
		e := decodeEval(t, r.stdout)
		if *e.N != 180 {
			t.Errorf("n = %d, want all 180 rows", *e.N)
		}
		if *e.Accuracy < 0.9 || *e.MacroF1 < 0.9 {
			t.Errorf("accuracy %v macro_f1 %v on the training file, want >= 0.9", *e.Accuracy, *e.MacroF1)
		}
		for q, c := range e.PerClass {
			if *c.Support != 60 {
				t.Errorf("per_class[%s].support = %d, want 60", q, *c.Support)
			}
		}
		if e.Model.Name != man.Name || e.Model.Version != man.Version || e.Data != data || e.Split != "all" {
			t.Errorf("eval model/data/split = %+v %q %q", e.Model, e.Data, e.Split)
		}
	})

	t.Run("eval validation split", func(t *testing.T) {
		r := mustTriage(t, "eval", "--model", model, "--data", data, "--text-column", "body", "--label-column", "queue",
			"--split", "validation", "--json")
		e := decodeEval(t, r.stdout)
		if *e.N != man.Training.ValRows || *e.N != 18 {
			t.Errorf("n = %d, want the %d validation rows", *e.N, man.Training.ValRows)
		}
		if e.Split != "validation" {
			t.Errorf("split = %q", e.Split)
		}
		// ONNX Runtime on the recomputed split reproduces the trainer's
		// own (pure-Go) validation figures.
		if *e.Accuracy != man.Metrics.Validation.Accuracy || math.Abs(*e.MacroF1-man.Metrics.Validation.MacroF1) > 1e-9 {
			t.Errorf("eval --split validation accuracy %v macro_f1 %v, model.json says %v %v",
				*e.Accuracy, *e.MacroF1, man.Metrics.Validation.Accuracy, man.Metrics.Validation.MacroF1)
		}
		total := 0
		for _, c := range e.PerClass {
			total += *c.Support
		}
		if total != 18 {
			t.Errorf("per-class support sums to %d, want 18", total)
		}
	})

	t.Run("eval text summary", func(t *testing.T) {
		r := mustTriage(t, "eval", "--model", model, "--data", data, "--text-column", "body", "--label-column", "queue")
		want := fmt.Sprintf("model support %s on %s (all): n=180 accuracy=", man.Version, data)
		if !strings.HasPrefix(r.stdout, want) || strings.Count(r.stdout, "\n") != 1 || !strings.Contains(r.stdout, "macro_f1=") {
			t.Errorf("eval summary %q, want one line starting %q", r.stdout, want)
		}
	})

	t.Run("predict", func(t *testing.T) {
		texts := []string{
			"I was overcharged on my invoice, please refund the payment",
			"where is my parcel? tracking says the courier lost the delivery",
			"locked out: password reset does not work and login fails",
		}
		r := mustTriage(t, append([]string{"predict", "--model", model}, texts...)...)
		preds := decodePredict(t, r.stdout, len(texts))
		for i, p := range preds {
			if p.Text != texts[i] {
				t.Errorf("line %d text %q, want %q (one line per text, in order)", i+1, p.Text, texts[i])
			}
			if want := []string{"billing", "shipping", "account"}[i]; p.Label != want {
				t.Errorf("%q: label %q, want %q", texts[i], p.Label, want)
			}
			if p.Model.Name != "support" || p.Model.Version != man.Version {
				t.Errorf("model %+v, want support %s", p.Model, man.Version)
			}
			if len(p.Scores) != 3 {
				t.Fatalf("%d scores, want 3 (top-k 5 capped at 3 labels): %+v", len(p.Scores), p.Scores)
			}
			if p.Scores[0].Label != p.Label || p.Scores[0].Score != p.Confidence {
				t.Errorf("confidence %v/%q differs from the top score %+v", p.Confidence, p.Label, p.Scores[0])
			}
			if p.Confidence <= 1.0/3 || p.Confidence > 1 {
				t.Errorf("confidence %v for an obvious text", p.Confidence)
			}
			var sum float32
			seen := map[string]bool{}
			for j, s := range p.Scores {
				sum += s.Score
				seen[s.Label] = true
				if j > 0 && s.Score > p.Scores[j-1].Score {
					t.Errorf("scores not in descending order: %+v", p.Scores)
				}
			}
			if math.Abs(float64(sum)-1) > 1e-4 || len(seen) != 3 {
				t.Errorf("scores %+v: want each label once, summing to 1 (got %v)", p.Scores, sum)
			}
		}
	})

	t.Run("predict top-k from env", func(t *testing.T) {
		t.Setenv("TRIAGE_TOP_K", "1")
		r := mustTriage(t, "predict", "--model", model, "refund my invoice")
		p := decodePredict(t, r.stdout, 1)[0]
		if len(p.Scores) != 1 || p.Label != "billing" {
			t.Errorf("TRIAGE_TOP_K=1: scores %+v label %q, want one score for billing", p.Scores, p.Label)
		}
		// A flag on the command line beats the environment.
		r = mustTriage(t, "predict", "--model", model, "--top-k", "2", "refund my invoice")
		if p := decodePredict(t, r.stdout, 1)[0]; len(p.Scores) != 2 {
			t.Errorf("--top-k 2 with TRIAGE_TOP_K=1: %d scores, want 2", len(p.Scores))
		}
	})

	t.Run("version", func(t *testing.T) {
		r := mustTriage(t, "version")
		if r.stdout != "triage "+version+"\n" {
			t.Errorf("version printed %q", r.stdout)
		}
	})
}

// --- environment and config file ------------------------------------------

// quickTrain trains a small bundle fast; extra args come before the fixed ones
// so tests can check precedence between flags, TRIAGE_* and --config.
func quickTrain(t *testing.T, data, out string, extra ...string) bundle.Manifest {
	t.Helper()
	args := append([]string{"train"}, extra...)
	args = append(args, "--data", data, "--text-column", "body", "--label-column", "queue", "--out", out,
		"--max-epochs", "2", "--learning-rates", "0.2", "--l2", "0", "--char-ngram-min", "0", "--char-ngram-max", "0")
	r := mustTriage(t, args...)
	var o trainOutput
	if err := json.Unmarshal([]byte(r.stdout), &o); err != nil {
		t.Fatalf("train output %q: %v", r.stdout, err)
	}
	m := loadManifest(t, out)
	if o.Version != m.Version {
		t.Errorf("train printed version %q, model.json has %q", o.Version, m.Version)
	}
	return m
}

func TestCLIEnvAndConfig(t *testing.T) {
	data, _, _ := trainedModel(t) // also cleans TRIAGE_* from the environment
	dir := t.TempDir()
	cfg := writeFile(t, dir, "triage.yaml", "model-version: cfg-3\nseed: 9\nname: from-config\n")

	t.Run("env sets flags", func(t *testing.T) {
		t.Setenv("TRIAGE_MODEL_VERSION", "env-7")
		t.Setenv("TRIAGE_SEED", "5")
		m := quickTrain(t, data, filepath.Join(dir, "env"))
		if m.Version != "env-7" || m.Training.Seed != 5 {
			t.Errorf("TRIAGE_MODEL_VERSION=env-7 TRIAGE_SEED=5 gave version %q seed %d", m.Version, m.Training.Seed)
		}
	})

	t.Run("config file sets flags", func(t *testing.T) {
		m := quickTrain(t, data, filepath.Join(dir, "cfg"), "--config", cfg)
		if m.Version != "cfg-3" || m.Training.Seed != 9 || m.Name != "from-config" {
			t.Errorf("--config gave name %q version %q seed %d, want from-config cfg-3 9", m.Name, m.Version, m.Training.Seed)
		}
	})

	t.Run("config file named by TRIAGE_CONFIG", func(t *testing.T) {
		t.Setenv("TRIAGE_CONFIG", cfg)
		m := quickTrain(t, data, filepath.Join(dir, "envcfg"))
		if m.Version != "cfg-3" || m.Training.Seed != 9 {
			t.Errorf("TRIAGE_CONFIG gave version %q seed %d, want cfg-3 9", m.Version, m.Training.Seed)
		}
	})

	t.Run("flag beats env beats config", func(t *testing.T) {
		t.Setenv("TRIAGE_MODEL_VERSION", "env-7")
		t.Setenv("TRIAGE_SEED", "5")
		m := quickTrain(t, data, filepath.Join(dir, "prec"), "--config", cfg, "--seed", "11")
		if m.Version != "env-7" {
			t.Errorf("version %q: TRIAGE_MODEL_VERSION must beat the config file", m.Version)
		}
		if m.Training.Seed != 11 {
			t.Errorf("seed %d: --seed 11 must beat TRIAGE_SEED=5 and the config's 9", m.Training.Seed)
		}
		if m.Name != "from-config" {
			t.Errorf("name %q: the config still fills flags neither env nor flags set", m.Name)
		}
	})

	t.Run("bad env value", func(t *testing.T) {
		t.Setenv("TRIAGE_SEED", "many")
		wantErr(t, []string{"seed", "many"}, "train", "--data", data, "--out", filepath.Join(dir, "bad"))
		if _, err := os.Stat(filepath.Join(dir, "bad")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a failed parse still wrote a bundle: %v", err)
		}
	})

	t.Run("missing config file", func(t *testing.T) {
		missing := filepath.Join(dir, "nope.yaml")
		wantErr(t, []string{missing}, "train", "--config", missing, "--data", data, "--out", filepath.Join(dir, "bad"))
	})
}

// --- errors ---------------------------------------------------------------

func TestCLIErrors(t *testing.T) {
	data, model, _ := trainedModel(t)
	dir := t.TempDir()
	evalArgs := func(file string, extra ...string) []string {
		return append([]string{"eval", "--model", model, "--data", file, "--text-column", "body", "--label-column", "queue", "--json"}, extra...)
	}

	t.Run("eval label the model does not know", func(t *testing.T) {
		// The quoted two-line body makes the row after it start on line 4.
		f := writeFile(t, dir, "unknown-label.csv",
			"queue,body\nbilling,\"refund my\ninvoice\"\nlegal,I want to talk to a lawyer\nshipping,parcel late\n")
		wantErr(t, []string{f + ":4:", `label "legal"`, "not one the model knows"}, evalArgs(f)...)
	})

	t.Run("missing column", func(t *testing.T) {
		f := writeFile(t, dir, "no-body.csv", "queue,text\nbilling,refund please\n")
		wantErr(t, []string{f + ":1:", `no column "body"`, "queue, text"}, evalArgs(f)...)
		wantErr(t, []string{f + ":1:", `no column "body"`}, "train", "--data", f, "--text-column", "body",
			"--label-column", "queue", "--out", filepath.Join(dir, "never"))
		wantErr(t, []string{data + ":1:", `no column "category"`}, "train", "--data", data, "--text-column", "body",
			"--label-column", "category", "--out", filepath.Join(dir, "never"))
	})

	t.Run("ragged row", func(t *testing.T) {
		f := writeFile(t, dir, "ragged.csv", "queue,body,channel\nbilling,refund please,email\nshipping,parcel late\n")
		wantErr(t, []string{f + ":3:", "row has 2 fields, header has 3"}, evalArgs(f)...)
		wantErr(t, []string{f + ":3:", "row has 2 fields, header has 3"}, "train", "--data", f, "--text-column", "body",
			"--label-column", "queue", "--out", filepath.Join(dir, "never"))
	})

	t.Run("empty file", func(t *testing.T) {
		f := writeFile(t, dir, "empty.csv", "")
		wantErr(t, []string{f, "no examples", "empty"}, evalArgs(f)...)
		wantErr(t, []string{f, "no examples"}, "train", "--data", f, "--text-column", "body", "--label-column", "queue",
			"--out", filepath.Join(dir, "never"))
		h := writeFile(t, dir, "header-only.csv", "queue,body\n")
		wantErr(t, []string{h, "no examples"}, evalArgs(h)...)
	})

	t.Run("empty text", func(t *testing.T) {
		f := writeFile(t, dir, "blank.csv", "queue,body\nbilling,refund\nshipping,\"  \"\n")
		wantErr(t, []string{f + ":3:", "empty text"}, evalArgs(f)...)
	})

	t.Run("missing data file", func(t *testing.T) {
		f := filepath.Join(dir, "absent.csv")
		wantErr(t, []string{f}, evalArgs(f)...)
	})

	t.Run("unknown split", func(t *testing.T) {
		wantErr(t, []string{`--split "test"`, "all or validation"}, evalArgs(data, "--split", "test")...)
	})

	t.Run("validation split of another file", func(t *testing.T) {
		other := writeFile(t, dir, "other.csv", "queue,body\nbilling,refund\nshipping,parcel\naccount,password\n")
		sha := loadManifest(t, model).Training.DataSHA256
		wantErr(t, []string{"--split validation", data, "sha256 " + sha[:12] + ")", other}, evalArgs(other, "--split", "validation")...)
	})

	t.Run("validation split of a bundle without data_sha256", func(t *testing.T) {
		// model.json is not covered by the bundle checksums; a bundle made
		// elsewhere may lack training provenance. This used to panic
		// (slicing the empty hash) instead of returning an error.
		m := copyBundle(t, model, filepath.Join(dir, "no-provenance"))
		editJSON(t, filepath.Join(m, bundle.ManifestFile), func(doc map[string]any) {
			doc["training"].(map[string]any)["data_sha256"] = ""
		})
		wantErr(t, []string{"--split validation needs the file the model was trained on", data},
			"eval", "--model", m, "--data", data, "--text-column", "body", "--label-column", "queue", "--split", "validation")
	})

	t.Run("missing model flag", func(t *testing.T) {
		wantErr(t, []string{"predict", "--model"}, "predict", "some text")
		wantErr(t, []string{"eval", "--model"}, "eval", "--data", data)
		wantErr(t, []string{"--data"}, "eval", "--model", model)
		wantErr(t, []string{"--data", "--out"}, "train")
	})

	t.Run("predict without texts", func(t *testing.T) {
		wantErr(t, []string{"at least one TEXT"}, "predict", "--model", model)
	})

	t.Run("model dir is not a bundle", func(t *testing.T) {
		empty := t.TempDir()
		err := wantErr(t, []string{empty, "no model.json"}, "predict", "--model", empty, "text")
		if !errors.Is(err, bundle.ErrNotBundle) {
			t.Errorf("error %v does not wrap bundle.ErrNotBundle", err)
		}
	})

	t.Run("bad ORT library", func(t *testing.T) {
		const lib = "/nonexistent/libonnxruntime.so.1"
		wantErr(t, []string{lib, "make onnxruntime", "--ort-lib"}, "predict", "--model", model, "--ort-lib", lib, "hello")
		wantErr(t, []string{lib, "make onnxruntime"}, append(evalArgs(data), "--ort-lib", lib)...)
	})

	t.Run("bad flags", func(t *testing.T) {
		wantErr(t, []string{"bogus"}, "train", "--bogus")
		wantErr(t, []string{"--sessions"}, "predict", "--model", model, "--sessions", "0", "x")
		wantErr(t, []string{"--batch"}, evalArgs(data, "--batch", "0")...)
		wantErr(t, []string{"--learning-rates", "fast"}, "train", "--data", data, "--out", filepath.Join(dir, "never"),
			"--learning-rates", "fast")
		wantErr(t, []string{"unexpected arguments"}, "train", "--data", data, "--out", filepath.Join(dir, "never"), "extra")
	})

	t.Run("help", func(t *testing.T) {
		if r := triage(t, "predict", "--help"); !errors.Is(r.err, flag.ErrHelp) || !strings.Contains(r.stderr, "triage predict --model DIR") {
			t.Errorf("predict --help: err %v, stderr %q", r.err, r.stderr)
		}
		if r := triage(t); !errors.Is(r.err, flag.ErrHelp) {
			t.Errorf("no subcommand: err %v, want flag.ErrHelp", r.err)
		}
	})

	if _, err := os.Stat(filepath.Join(dir, "never")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed train left a bundle behind: %v", err)
	}
}

// TestCLIExitCodes runs the real main() in a child process: exit 0 and one
// JSON line per text on success, exit 1 with "triage: <error>" on stderr.
func TestCLIExitCodes(t *testing.T) {
	data, model, _ := trainedModel(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	runMain := func(args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command(exe, args...)
		cmd.Env = append(os.Environ(), execMainEnv+"=1")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			code = ee.ExitCode()
		default:
			t.Fatalf("run %v: %v", args, err)
		}
		return out.String(), errb.String(), code
	}

	out, stderr, code := runMain("predict", "--model", model, "refund my invoice", "parcel tracking")
	if code != 0 {
		t.Fatalf("predict exit %d, stderr:\n%s", code, stderr)
	}
	preds := decodePredict(t, out, 2)
	if preds[0].Label != "billing" || preds[1].Label != "shipping" {
		t.Errorf("labels %q %q, want billing shipping", preds[0].Label, preds[1].Label)
	}

	out, stderr, code = runMain("eval", "--model", model, "--data", data, "--text-column", "body", "--label-column", "queue", "--split", "test")
	if code != 1 || out != "" || !strings.HasPrefix(stderr, "triage: eval: --split \"test\"") {
		t.Errorf("bad --split: exit %d, stdout %q, stderr %q; want exit 1 and a triage: message", code, out, stderr)
	}

	_, stderr, code = runMain("predict", "--help")
	if code != 0 || !strings.Contains(stderr, "USAGE") {
		t.Errorf("predict --help: exit %d, stderr %q; want exit 0 and usage", code, stderr)
	}

	// A typo in a deployment script must fail, naming what was not
	// understood and the nearest known name.
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"bogus"}, []string{`unknown command "bogus"`}},
		{[]string{"consumr"}, []string{`unknown command "consumr"`, `did you mean "consumer"`}},
		{[]string{"models", "bogus"}, []string{`triage: models: unknown command "bogus"`}},
		{[]string{"models", "promot", "support", "v1"}, []string{`did you mean "promote"`}},
		{[]string{"predict", "--modle", model, "x"}, []string{"unknown flag --modle", `did you mean "model"`}},
		{[]string{"run", "--bogus-flag"}, []string{"unknown flag --bogus-flag"}},
		{[]string{"run", "--target", "consumr"}, []string{`--target "consumr"`, `did you mean "consumer"`}},
	} {
		out, stderr, code := runMain(c.args...)
		if code == 0 || out != "" {
			t.Errorf("triage %v: exit %d, stdout %q; want a non-zero exit", c.args, code, out)
		}
		for _, w := range c.want {
			if !strings.Contains(stderr, w) {
				t.Errorf("triage %v: stderr %q lacks %q", c.args, stderr, w)
			}
		}
	}
}

// TestCLIEncoder goes through the transformer path as a user would:
// convert the MiniLM checkpoint, train a hybrid head, predict and
// evaluate with the same commands as a linear model; and refuses a
// feature set that needs an encoder without one.
func TestCLIEncoder(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	enc := filepath.Join(dir, "minilm")
	mustTriage(t, "encoder", "convert", "--checkpoint", minilm.Checkpoint(), "--out", enc)

	data := syntheticCSV(t, dir)
	model := filepath.Join(dir, "hybrid")
	m := quickTrain(t, data, model, "--encoder", enc, "--encoder-scales", "2")
	if m.Graph.Kind != bundle.KindHybrid || m.Encoder == nil || m.Encoder.Dim != 384 {
		t.Fatalf("bundle kind %q encoder %+v, want hybrid with a 384-dim encoder", m.Graph.Kind, m.Encoder)
	}
	r := mustTriage(t, "predict", "--model", model, "refund my invoice", "parcel tracking")
	preds := decodePredict(t, r.stdout, 2)
	if preds[0].Label != "billing" || preds[1].Label != "shipping" {
		t.Errorf("labels %q %q, want billing shipping", preds[0].Label, preds[1].Label)
	}
	r = mustTriage(t, "eval", "--model", model, "--data", data, "--text-column", "body", "--label-column", "queue", "--split", "validation", "--json")
	if ev := decodeEval(t, r.stdout); *ev.Accuracy != m.Metrics.Validation.Accuracy {
		t.Errorf("eval accuracy %v, training reported %v", *ev.Accuracy, m.Metrics.Validation.Accuracy)
	}
	wantErr(t, []string{"--features encoder needs --encoder"}, "train", "--data", data, "--out", filepath.Join(dir, "x"), "--features", "encoder")
	wantErr(t, []string{"--encoder-variant apply only with --encoder"}, "train", "--data", data, "--out", filepath.Join(dir, "x"), "--encoder-variant", "int8")

	// triage dev refuses to serve default models trained another way than
	// its flags say, rather than silently keeping them.
	src := &trainer.EncoderSource{Dir: enc, Variant: "int8"}
	if err := trainer.SameEncoder(m, src); err == nil || !strings.Contains(err.Error(), "--encoder-variant is int8") {
		t.Errorf("variant mismatch: %v", err)
	}
	src.Variant = "fp32"
	if err := trainer.SameEncoder(m, src); err != nil {
		t.Errorf("same encoder refused: %v", err)
	}
	if err := trainer.SameEncoder(m, nil); err == nil {
		t.Error("hybrid model accepted without --encoder")
	}
}
