package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/featurizer"
)

// writeBundle writes a tiny valid bundle to dir; tag makes its content (and
// so its hash) distinct. The ONNX bytes are opaque to bundle.Load.
func writeBundle(t testing.TB, dir, tag string) string {
	t.Helper()
	vocab, err := featurizer.NewVocab([]uint32{3, 17, 256}, []float32{1.5, 2.25, 1})
	if err != nil {
		t.Fatal(err)
	}
	m := &bundle.Manifest{
		Name: "scratch", Version: "dev", CreatedAt: time.Date(2026, 11, 24, 17, 0, 0, 0, time.UTC),
		Labels:     []string{"account", "billing", "shipping"},
		Featurizer: featurizer.DefaultConfig(),
		Graph: bundle.Graph{Kind: bundle.KindLinear, Opset: 17, NumFeatures: vocab.Size(), NumClasses: 3,
			InputIDs: "ids", InputWeight: "weights", Output: "probs"},
	}
	if err := bundle.Write(dir, m, vocab, []byte("\x08\x07fake-onnx-"+tag)); err != nil {
		t.Fatalf("bundle.Write: %v", err)
	}
	return dir
}

func open(t testing.TB, root string, opts Options) *Local {
	t.Helper()
	s, err := OpenLocal(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// setup opens a store in a fresh root and registers n distinct bundles as
// model "support" v1..vn.
func setup(t *testing.T, n int, opts Options) (*Local, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "registry")
	s := open(t, root, opts)
	src := t.TempDir()
	for i := 1; i <= n; i++ {
		dir := writeBundle(t, filepath.Join(src, strconv.Itoa(i)), strconv.Itoa(i))
		v, err := s.Register(context.Background(), "support", dir, Lineage{}, "test")
		if err != nil {
			t.Fatal(err)
		}
		if want := "v" + strconv.Itoa(i); v.Version != want {
			t.Fatalf("registered %s, want %s", v.Version, want)
		}
	}
	return s, root
}

func mustHistory(t *testing.T, s Store, name string) []Move {
	t.Helper()
	h, err := s.History(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// checkChain checks each champion move starts where the previous one ended.
func checkChain(t *testing.T, h []Move) {
	t.Helper()
	prev := ""
	for i, m := range h {
		if m.Alias != Champion {
			continue
		}
		if m.From != prev {
			t.Fatalf("move %d %+v: from %q, previous champion %q", i, m, m.From, prev)
		}
		prev = m.To
	}
}

func TestRegister(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	root := t.TempDir()
	s := open(t, root, Options{Now: func() time.Time { return now }})
	src := t.TempDir()
	b1 := writeBundle(t, filepath.Join(src, "a"), "a")
	b2 := writeBundle(t, filepath.Join(src, "b"), "b")
	lin := Lineage{DataPath: "tickets.csv", DataSHA256: strings.Repeat("ab", 32), Parent: "v0-none",
		Metrics: map[string]float64{"macro_f1": 0.91}, HyperParams: map[string]any{"epochs": 5.0}, CodeVersion: "abc123"}

	v1, err := s.Register(ctx, "support", b1, lin, "alice")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := s.Register(ctx, "support", b2, Lineage{Parent: "v1"}, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if v1.Version != "v1" || v2.Version != "v2" || v1.Hash == v2.Hash {
		t.Fatalf("versions %s %s hashes %s %s", v1.Version, v2.Version, v1.Hash, v2.Hash)
	}
	if want := filepath.Join(root, "support", "v1"); v1.Dir != want || !filepath.IsAbs(v1.Dir) {
		t.Errorf("Dir %q, want %q", v1.Dir, want)
	}
	if !v1.CreatedAt.Equal(now) || v1.CreatedBy != "alice" || v1.Model != "support" {
		t.Errorf("v1 = %+v", v1)
	}

	again, err := s.Register(ctx, "support", b1, Lineage{}, "carol")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, v1) {
		t.Errorf("same content registered as %+v, want existing %+v", again, v1)
	}

	got, err := s.Get(ctx, "support", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, v1) || !reflect.DeepEqual(got.Lineage, lin) {
		t.Errorf("Get = %+v, want %+v", got, v1)
	}
	vs, err := s.Versions(ctx, "support")
	if err != nil || len(vs) != 2 || vs[0].Version != "v1" || vs[1].Version != "v2" {
		t.Fatalf("Versions = %+v, %v", vs, err)
	}
	if ms, err := s.Models(ctx); err != nil || !slices.Equal(ms, []string{"support"}) {
		t.Errorf("Models = %v, %v", ms, err)
	}

	// The copy loads, relabelled; version.json holds no Dir or Loads.
	for _, v := range []Version{v1, v2} {
		b, err := bundle.Load(v.Dir)
		if err != nil {
			t.Fatalf("copy does not load: %v", err)
		}
		if b.Manifest.Name != "support" || b.Manifest.Version != v.Version {
			t.Errorf("copy manifest name/version %q %q, want support %s", b.Manifest.Name, b.Manifest.Version, v.Version)
		}
	}
	raw, err := os.ReadFile(filepath.Join(v1.Dir, "version.json"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(`"dir"`)) || bytes.Contains(raw, []byte(`"loads"`)) {
		t.Errorf("version.json has dir or loads:\n%s", raw)
	}
}

func TestHashStable(t *testing.T) {
	ctx := context.Background()
	src := writeBundle(t, filepath.Join(t.TempDir(), "b"), "x")
	b, err := bundle.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for f, sum := range b.Manifest.Files {
		lines = append(lines, f+"  "+sum+"\n")
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "")))
	want := "sha256:" + hex.EncodeToString(sum[:])

	s := open(t, t.TempDir(), Options{})
	v, err := s.Register(ctx, "support", src, Lineage{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if v.Hash != want {
		t.Fatalf("hash %s, want %s", v.Hash, want)
	}
	// The relabelled copy has the same content, so the same hash: in
	// another registry, and as the same version here.
	other, err := open(t, t.TempDir(), Options{}).Register(ctx, "other", v.Dir, Lineage{}, "")
	if err != nil || other.Hash != want {
		t.Errorf("copy registered elsewhere: hash %s, %v; want %s", other.Hash, err, want)
	}
	same, err := s.Register(ctx, "support", v.Dir, Lineage{}, "")
	if err != nil || same.Version != "v1" {
		t.Errorf("copy re-registered as %s, %v; want v1", same.Version, err)
	}
}

func TestRegisterRefusesBrokenBundle(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := open(t, root, Options{})
	broken := writeBundle(t, filepath.Join(t.TempDir(), "b"), "x")
	if err := os.WriteFile(filepath.Join(broken, bundle.ModelFile), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.Register(ctx, "support", broken, Lineage{}, "")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("register broken bundle: %v, want ErrInvalid with the reason", err)
	}
	_, err = s.Register(ctx, "support", t.TempDir(), Lineage{}, "")
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, bundle.ErrNotBundle) {
		t.Fatalf("register empty dir: %v", err)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("refused register left %v", entries)
	}
	if _, err := s.Versions(ctx, "support"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Versions after refusals: %v, want ErrNotFound", err)
	}

	// With a model present: a crashed Register's temp dir is cleaned by the
	// next one, and a refusal adds nothing.
	if _, err := s.Register(ctx, "support", writeBundle(t, filepath.Join(t.TempDir(), "ok"), "ok"), Lineage{}, ""); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(root, "support", tmpPrefix+"crashed")
	if err := os.MkdirAll(stray, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, "support", broken, Lineage{}, ""); err == nil {
		t.Fatal("broken bundle registered")
	}
	if _, err := s.Register(ctx, "support", writeBundle(t, filepath.Join(t.TempDir(), "ok2"), "ok2"), Lineage{}, ""); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "support"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{".lock", "v1", "v2"}; !slices.Equal(names, want) {
		t.Errorf("model dir holds %v, want %v", names, want)
	}
}

func TestInvalidAndNotFound(t *testing.T) {
	ctx := context.Background()
	s, root := setup(t, 1, Options{})
	src := writeBundle(t, filepath.Join(t.TempDir(), "b"), "b")
	for _, name := range []string{"", "Support", "-x", "a/b", "..", strings.Repeat("a", 65)} {
		if _, err := s.Register(ctx, name, src, Lineage{}, ""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
			t.Errorf("Register(%q): %v, want ErrInvalid naming it", name, err)
		}
	}
	for _, v := range []string{"", "1", "v0", "v01", "v1a", "V1", "v-1"} {
		if _, err := s.Get(ctx, "support", v); !errors.Is(err, ErrInvalid) {
			t.Errorf("Get(%q): %v, want ErrInvalid", v, err)
		}
	}
	if _, err := s.SetAlias(ctx, "support", "Bad Alias", "v1", "", ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetAlias bad alias: %v", err)
	}
	if _, err := s.Get(ctx, "support", "v9"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "v9") {
		t.Errorf("Get v9: %v", err)
	}
	for _, err := range []error{
		func() error { _, err := s.Get(ctx, "nope", "v1"); return err }(),
		func() error { _, err := s.Versions(ctx, "nope"); return err }(),
		func() error { _, err := s.Aliases(ctx, "nope"); return err }(),
		func() error { _, err := s.History(ctx, "nope"); return err }(),
		func() error { _, err := s.Promote(ctx, "nope", "v1", "", ""); return err }(),
		func() error { _, err := s.Rollback(ctx, "nope", "", ""); return err }(),
		func() error { _, err := s.RemoveAlias(ctx, "nope", "x", "", ""); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nope") {
			t.Errorf("unknown model: %v, want ErrNotFound naming it", err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("writes to an unknown model created its directory: %v", err)
	}
}

func TestAliasesAndHistory(t *testing.T) {
	ctx := context.Background()
	s, root := setup(t, 2, Options{})

	m, err := s.Promote(ctx, "support", "v1", "alice", "first")
	if err != nil {
		t.Fatal(err)
	}
	if m.Model != "support" || m.Alias != Champion || m.From != "" || m.To != "v1" || m.Kind != KindPromote || m.Who != "alice" || m.Why != "first" || m.At.IsZero() {
		t.Errorf("promote move %+v", m)
	}
	if _, err := s.SetAlias(ctx, "support", "challenger", "v2", "bob", "shadow"); err != nil {
		t.Fatal(err)
	}
	if a, err := s.Aliases(ctx, "support"); err != nil || !reflect.DeepEqual(a, map[string]string{Champion: "v1", "challenger": "v2"}) {
		t.Errorf("Aliases = %v, %v", a, err)
	}
	if v, err := s.Resolve(ctx, "support", Champion); err != nil || v.Version != "v1" {
		t.Errorf("Resolve champion = %s, %v", v.Version, err)
	}
	// Already there: a no-op returning the move that set it.
	if again, err := s.Promote(ctx, "support", "v1", "carol", "again"); err != nil || !reflect.DeepEqual(again, mustHistory(t, s, "support")[0]) {
		t.Errorf("re-promote = %+v, %v", again, err)
	}
	if m, err := s.Promote(ctx, "support", "v2", "bob", "better"); err != nil || m.From != "v1" || m.To != "v2" {
		t.Errorf("promote v2 = %+v, %v", m, err)
	}
	m, err = s.RemoveAlias(ctx, "support", "challenger", "bob", "done")
	if err != nil || m.From != "v2" || m.To != "" || m.Kind != KindRemove {
		t.Errorf("remove = %+v, %v", m, err)
	}
	if _, err := s.RemoveAlias(ctx, "support", "challenger", "", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove unset alias: %v", err)
	}
	if _, err := s.Resolve(ctx, "support", "challenger"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "challenger") {
		t.Errorf("resolve removed alias: %v", err)
	}

	h := mustHistory(t, s, "support")
	var got []string
	for _, m := range h {
		got = append(got, m.Alias+":"+m.Kind+":"+m.From+">"+m.To)
	}
	want := []string{"champion:promote:>v1", "challenger:set:>v2", "champion:promote:v1>v2", "challenger:remove:v2>"}
	if !slices.Equal(got, want) {
		t.Errorf("history %v, want %v", got, want)
	}
	raw, err := os.ReadFile(filepath.Join(root, "support", "history.jsonl"))
	if err != nil || bytes.Count(raw, []byte("\n")) != len(want) {
		t.Errorf("history.jsonl has %d lines, want %d (%v)", bytes.Count(raw, []byte("\n")), len(want), err)
	}
}

func TestPromoteRefusals(t *testing.T) {
	ctx := context.Background()
	var verified []string
	s, root := setup(t, 2, Options{Verify: func(dir string) error {
		verified = append(verified, filepath.Base(dir))
		if filepath.Base(dir) == "v2" {
			return errors.New("onnxruntime: graph is broken")
		}
		return nil
	}})
	history := filepath.Join(root, "support", "history.jsonl")

	if _, err := s.Promote(ctx, "support", "v7", "", ""); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "v7") {
		t.Errorf("promote v7: %v, want ErrNotFound naming v7", err)
	}
	if _, err := os.Stat(history); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused promote wrote history: %v", err)
	}
	if _, err := s.Promote(ctx, "support", "v1", "", ""); err != nil {
		t.Fatal(err)
	}
	for _, try := range []func() (Move, error){
		func() (Move, error) { return s.Promote(ctx, "support", "v2", "", "") },
		func() (Move, error) { return s.SetAlias(ctx, "support", "challenger", "v2", "", "") },
	} {
		if _, err := try(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "graph is broken") {
			t.Errorf("move to unverifiable version: %v, want ErrInvalid with the reason", err)
		}
	}
	if h := mustHistory(t, s, "support"); len(h) != 1 {
		t.Errorf("history has %d moves after refusals, want 1", len(h))
	}
	if want := []string{"v1", "v2", "v2"}; !slices.Equal(verified, want) {
		t.Errorf("verified %v, want %v", verified, want)
	}
}

func TestRollback(t *testing.T) {
	ctx := context.Background()
	s, root := setup(t, 3, Options{})
	if _, err := s.Rollback(ctx, "support", "", ""); !errors.Is(err, ErrNoRollback) {
		t.Fatalf("rollback with no champion: %v", err)
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		if _, err := s.Promote(ctx, "support", v, "", ""); err != nil {
			t.Fatal(err)
		}
	}

	// A store whose Verify refuses v2 cannot roll back to it.
	strict := open(t, root, Options{Verify: func(dir string) error {
		if filepath.Base(dir) == "v2" {
			return errors.New("bad v2")
		}
		return nil
	}})
	if _, err := strict.Rollback(ctx, "support", "", ""); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "bad v2") {
		t.Fatalf("rollback to unverifiable version: %v", err)
	}

	for _, want := range [][2]string{{"v3", "v2"}, {"v2", "v1"}} {
		m, err := s.Rollback(ctx, "support", "ops", "bad deploy")
		if err != nil {
			t.Fatal(err)
		}
		if m.Kind != KindRollback || m.Alias != Champion || m.From != want[0] || m.To != want[1] || m.Who != "ops" {
			t.Errorf("rollback move %+v, want %s -> %s", m, want[0], want[1])
		}
		if v, err := s.Resolve(ctx, "support", Champion); err != nil || v.Version != want[1] {
			t.Errorf("champion after rollback %s, %v; want %s", v.Version, err, want[1])
		}
	}
	if _, err := s.Rollback(ctx, "support", "", ""); !errors.Is(err, ErrNoRollback) {
		t.Errorf("rollback past the first promotion: %v, want ErrNoRollback", err)
	}

	// The stack resumes after a new promotion; a removed champion empties it.
	if _, err := s.Promote(ctx, "support", "v3", "", ""); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Rollback(ctx, "support", "", ""); err != nil || m.From != "v3" || m.To != "v1" {
		t.Errorf("rollback after re-promotion = %+v, %v; want v3 -> v1", m, err)
	}
	if _, err := s.RemoveAlias(ctx, "support", Champion, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rollback(ctx, "support", "", ""); !errors.Is(err, ErrNoRollback) {
		t.Errorf("rollback after removing champion: %v, want ErrNoRollback", err)
	}
	checkChain(t, mustHistory(t, s, "support"))
}

func TestConcurrentPromotions(t *testing.T) {
	ctx := context.Background()
	const workers, rounds = 8, 10
	s, root := setup(t, 2*workers, Options{})
	other := open(t, root, Options{}) // a second store: only the flock orders it against s

	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds)
	for w := range workers {
		store := s
		if w%2 == 1 {
			store = other
		}
		wg.Go(func() {
			// Each worker alternates between its own two versions, so no
			// promotion is a no-op and every one must be recorded.
			for r := range rounds {
				v := "v" + strconv.Itoa(2*w+1+r%2)
				if _, err := store.Promote(ctx, "support", v, fmt.Sprint("worker", w), ""); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	h := mustHistory(t, s, "support")
	if len(h) != workers*rounds {
		t.Fatalf("history has %d moves, want %d", len(h), workers*rounds)
	}
	checkChain(t, h)
}

// TestHelperProcess is the child of TestConcurrentProcesses.
func TestHelperProcess(t *testing.T) {
	root := os.Getenv("REGISTRY_HELPER_ROOT")
	if root == "" {
		t.Skip("helper for TestConcurrentProcesses")
	}
	s := open(t, root, Options{})
	versions := strings.Split(os.Getenv("REGISTRY_HELPER_VERSIONS"), ",")
	n, _ := strconv.Atoi(os.Getenv("REGISTRY_HELPER_ROUNDS"))
	for i := range n {
		if _, err := s.Promote(context.Background(), "support", versions[i%len(versions)], "pid"+strconv.Itoa(os.Getpid()), ""); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConcurrentProcesses(t *testing.T) {
	const rounds = 25
	s, root := setup(t, 4, Options{})
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for _, vs := range []string{"v1,v2", "v3,v4"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "REGISTRY_HELPER_ROOT="+root, "REGISTRY_HELPER_VERSIONS="+vs, "REGISTRY_HELPER_ROUNDS="+strconv.Itoa(rounds))
		out := new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i])
		}
	}
	h := mustHistory(t, s, "support")
	if len(h) != 2*rounds {
		t.Fatalf("history has %d moves, want %d", len(h), 2*rounds)
	}
	checkChain(t, h)
	whos := map[string]int{}
	for _, m := range h {
		whos[m.Who]++
	}
	if len(whos) != 2 {
		t.Errorf("moves by %v, want two processes", whos)
	}
}

func TestTornHistoryLine(t *testing.T) {
	ctx := context.Background()
	s, root := setup(t, 2, Options{})
	for _, v := range []string{"v1", "v2"} {
		if _, err := s.Promote(ctx, "support", v, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(root, "support", "history.jsonl")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"model":"support","alias":"champion","to":"v1","ki`) // crash mid-write
	f.Close()

	if a, err := s.Aliases(ctx, "support"); err != nil || a[Champion] != "v2" {
		t.Fatalf("aliases with torn line = %v, %v", a, err)
	}
	if h := mustHistory(t, s, "support"); len(h) != 2 {
		t.Fatalf("history with torn line has %d moves, want 2", len(h))
	}
	// The next write drops the torn tail rather than gluing onto it.
	if _, err := s.Promote(ctx, "support", "v1", "", ""); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
	for _, l := range lines {
		if !json.Valid(l) {
			t.Errorf("history line not JSON: %s", l)
		}
	}
	if h := mustHistory(t, s, "support"); len(h) != 3 || len(lines) != 3 {
		t.Errorf("history %d moves, %d lines; want 3", len(h), len(lines))
	}
	checkChain(t, mustHistory(t, s, "support"))
}

func TestReportLoad(t *testing.T) {
	ctx := context.Background()
	s, root := setup(t, 1, Options{})
	at := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	reports := []LoadReport{
		{Instance: "pod/a", OK: true, At: at},
		{Instance: "pod-b", OK: false, Error: "onnxruntime: no such op", At: at},
		{Instance: "pod/a", OK: false, Error: "out of memory", At: at.Add(time.Minute)}, // replaces the first
	}
	for _, r := range reports {
		if err := s.ReportLoad(ctx, "support", "v1", r); err != nil {
			t.Fatal(err)
		}
	}
	v, err := s.Get(ctx, "support", "v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []LoadReport{reports[1], reports[2]}; !reflect.DeepEqual(v.Loads, want) {
		t.Errorf("Loads = %+v, want %+v", v.Loads, want)
	}
	if vs, err := s.Versions(ctx, "support"); err != nil || len(vs[0].Loads) != 2 {
		t.Errorf("Versions loads = %+v, %v", vs, err)
	}
	entries, err := os.ReadDir(filepath.Join(root, "support", "loads", "v1"))
	if err != nil || len(entries) != 2 {
		t.Errorf("loads dir holds %v, %v; want 2 files", entries, err)
	}

	if err := s.ReportLoad(ctx, "support", "v1", LoadReport{Instance: "x"}); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get(ctx, "support", "v1"); len(v.Loads) != 3 || v.Loads[2].At.IsZero() {
		t.Errorf("report without At: %+v", v.Loads)
	}
	if err := s.ReportLoad(ctx, "support", "v9", LoadReport{Instance: "x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("report for v9: %v", err)
	}
	if err := s.ReportLoad(ctx, "support", "v1", LoadReport{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("report without instance: %v", err)
	}
}

func TestInstanceFile(t *testing.T) {
	seen := map[string]string{}
	for _, in := range []string{"pod-a", "pod/a", "pod_a", "..", ".hidden", "a b", strings.Repeat("x", 300)} {
		f := instanceFile(in)
		if f != filepath.Base(f) || strings.HasPrefix(f, ".") || len(f) > 200 {
			t.Errorf("instanceFile(%q) = %q", in, f)
		}
		if prev, ok := seen[f]; ok {
			t.Errorf("%q and %q both map to %q", prev, in, f)
		}
		seen[f] = in
	}
	if f := instanceFile("gateway-7.eu"); f != "gateway-7.eu.json" {
		t.Errorf("safe name changed to %q", f)
	}
}
