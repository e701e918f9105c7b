package inference

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/triage-ml/triage/internal/onnxgraph"
)

const tol = 1e-5

var linearNames = struct{ in, out []string }{
	in:  []string{onnxgraph.InputIDs, onnxgraph.InputWeights},
	out: []string{onnxgraph.OutputProbs},
}

// testModel writes a random LinearSoftmax (padding row 0 kept zero) to a temp file.
func testModel(t *testing.T, seed uint64, features, classes int) (*onnxgraph.LinearSoftmax, string) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	m := &onnxgraph.LinearSoftmax{
		NumFeatures: features,
		NumClasses:  classes,
		Weights:     make([]float32, features*classes),
		Bias:        make([]float32, classes),
	}
	for i := classes; i < len(m.Weights); i++ {
		m.Weights[i] = float32(r.NormFloat64())
	}
	for i := range m.Bias {
		m.Bias[i] = float32(r.NormFloat64() * 0.5)
	}
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := m.WriteFile(path); err != nil {
		t.Fatalf("write model: %v", err)
	}
	return m, path
}

func randomInputs(seed uint64, features, batch, length int) ([]int64, []float32) {
	r := rand.New(rand.NewPCG(seed, 2))
	ids := make([]int64, batch*length)
	w := make([]float32, batch*length)
	for i := range ids {
		ids[i] = r.Int64N(int64(features))
		w[i] = float32(r.Float64()*2 - 0.5)
	}
	return ids, w
}

func newPool(t *testing.T, path string, opts SessionOptions) *SessionPool {
	t.Helper()
	initORT(t)
	p, err := NewSessionPool(path, linearNames.in, linearNames.out, opts)
	if err != nil {
		t.Fatalf("NewSessionPool: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// compare fails unless got matches the pure-Go reference within tol.
func compare(m *onnxgraph.LinearSoftmax, ids []int64, w []float32, batch, length int, got []float32) error {
	want, err := m.Reference(ids, w, batch, length)
	if err != nil {
		return fmt.Errorf("reference: %w", err)
	}
	if len(got) != len(want) {
		return fmt.Errorf("batch %d length %d: got %d values, want %d", batch, length, len(got), len(want))
	}
	for i := range want {
		if d := math.Abs(float64(got[i] - want[i])); !(d <= tol) {
			return fmt.Errorf("batch %d length %d: out[%d][%d] = %v, reference %v (|diff| %.3g > %g)",
				batch, length, i/m.NumClasses, i%m.NumClasses, got[i], want[i], d, tol)
		}
	}
	return nil
}

func TestRunLinearMatchesReference(t *testing.T) {
	const features, classes = 50, 7
	m, path := testModel(t, 1, features, classes)
	p := newPool(t, path, SessionOptions{IntraOpThreads: 1})
	if got := p.NumClasses(); got != classes {
		t.Errorf("NumClasses() = %d, want %d", got, classes)
	}
	if got := p.Size(); got != 1 {
		t.Errorf("Size() = %d, want 1 (PoolSize 0 -> 1)", got)
	}
	for i, bl := range [][2]int{{1, 1}, {1, 9}, {2, 3}, {3, 1}, {5, 17}, {16, 4}, {64, 33}, {7, 0}} {
		batch, length := bl[0], bl[1]
		t.Run(fmt.Sprintf("b%d_l%d", batch, length), func(t *testing.T) {
			ids, w := randomInputs(uint64(i), features, batch, length)
			got, err := p.RunLinear(context.Background(), ids, w, batch, length)
			if err != nil {
				t.Fatalf("RunLinear: %v", err)
			}
			if err := compare(m, ids, w, batch, length, got); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("b0", func(t *testing.T) {
		got, err := p.RunLinear(context.Background(), nil, nil, 0, 5)
		if err != nil || len(got) != 0 {
			t.Fatalf("RunLinear(batch 0) = %v, %v; want empty, nil", got, err)
		}
	})
}

func TestRunLinearConcurrent(t *testing.T) {
	const features, classes = 200, 5
	m, path := testModel(t, 2, features, classes)
	p := newPool(t, path, SessionOptions{PoolSize: 2, IntraOpThreads: 1})
	if p.Size() != 2 {
		t.Fatalf("Size() = %d, want 2", p.Size())
	}
	const goroutines, runs = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*runs)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < runs; r++ {
				batch, length := 1+(g+r)%9, 1+(g*7+r)%23
				ids, w := randomInputs(uint64(g*1000+r), features, batch, length)
				got, err := p.RunLinear(context.Background(), ids, w, batch, length)
				if err != nil {
					errs <- fmt.Errorf("goroutine %d run %d: %w", g, r, err)
					continue
				}
				if err := compare(m, ids, w, batch, length, got); err != nil {
					errs <- fmt.Errorf("goroutine %d run %d: %w", g, r, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRunLinearContextWhileBusy(t *testing.T) {
	m, path := testModel(t, 3, 20, 3)
	p := newPool(t, path, SessionOptions{PoolSize: 2})
	ids, w := randomInputs(9, 20, 2, 4)

	// Occupy every session so RunLinear must wait.
	var held []*slot
	for i := 0; i < p.Size(); i++ {
		s, err := p.acquire(context.Background())
		if err != nil {
			t.Fatalf("acquire %d: %v", i, err)
		}
		held = append(held, s)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := p.RunLinear(ctx, ids, w, 2, 4)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("RunLinear returned %v while all sessions were busy", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("RunLinear after cancel: %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunLinear did not return after its context was cancelled")
	}

	tctx, tcancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer tcancel()
	if _, err := p.RunLinear(tctx, ids, w, 2, 4); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RunLinear with expiring deadline: %v, want context.DeadlineExceeded", err)
	}

	// Already-cancelled contexts fail even when a session is free.
	for _, s := range held {
		p.free <- s
	}
	if _, err := p.RunLinear(ctx, ids, w, 2, 4); !errors.Is(err, context.Canceled) {
		t.Fatalf("RunLinear with cancelled ctx: %v, want context.Canceled", err)
	}
	got, err := p.RunLinear(context.Background(), ids, w, 2, 4)
	if err != nil {
		t.Fatalf("RunLinear after sessions freed: %v", err)
	}
	if err := compare(m, ids, w, 2, 4, got); err != nil {
		t.Fatal(err)
	}
}

// A cancel that lands mid-run aborts it through RunOptions.Terminate; the
// session must stay usable afterwards (the terminate flag is cleared).
func TestRunLinearAbortMidRun(t *testing.T) {
	const features, classes = 1000, 16
	m, path := testModel(t, 4, features, classes)
	p := newPool(t, path, SessionOptions{IntraOpThreads: 1})
	const batch, length = 256, 2048
	ids, w := randomInputs(5, features, batch, length)

	start := time.Now()
	if _, err := p.RunLinear(context.Background(), ids, w, batch, length); err != nil {
		t.Fatalf("warm-up run: %v", err)
	}
	full := time.Since(start)

	aborted := 0
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(full/10, cancel)
		_, err := p.RunLinear(ctx, ids, w, batch, length)
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, context.Canceled):
			aborted++
		default:
			t.Fatalf("RunLinear cancelled mid-run: %v, want nil or context.Canceled", err)
		}
		small, sw := randomInputs(uint64(i), features, 3, 5)
		got, err := p.RunLinear(context.Background(), small, sw, 3, 5)
		if err != nil {
			t.Fatalf("run after a cancelled run: %v", err)
		}
		if err := compare(m, small, sw, 3, 5, got); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("full run %v; %d of 5 cancelled runs were aborted mid-run", full, aborted)
}

func TestSessionPoolClose(t *testing.T) {
	_, path := testModel(t, 6, 10, 2)
	initORT(t)
	p, err := NewSessionPool(path, linearNames.in, linearNames.out, SessionOptions{PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	ids, w := randomInputs(1, 10, 1, 3)

	held, err := p.acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	waiter := make(chan error, 1)
	go func() {
		_, err := p.RunLinear(context.Background(), ids, w, 1, 3)
		waiter <- err
	}()
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()

	// The waiter is woken with ErrPoolClosed; Close waits for the held session.
	select {
	case err := <-waiter:
		if !errors.Is(err, ErrPoolClosed) {
			t.Fatalf("waiting RunLinear during Close: %v, want ErrPoolClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiting RunLinear not woken by Close")
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a session was still in use", err)
	case <-time.After(50 * time.Millisecond):
	}
	p.free <- held
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not finish after the session was returned")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := p.RunLinear(context.Background(), ids, w, 1, 3); !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("RunLinear after Close: %v, want ErrPoolClosed", err)
	}
}

func TestRunLinearBadInput(t *testing.T) {
	const features = 10
	_, path := testModel(t, 7, features, 3)
	p := newPool(t, path, SessionOptions{})
	ctx := context.Background()
	ids, w := randomInputs(1, features, 2, 3)

	cases := []struct {
		name    string
		ids     []int64
		w       []float32
		b, l    int
		wantErr string
	}{
		{"short ids", ids[:5], w, 2, 3, "len(ids)=5"},
		{"short weights", ids, w[:4], 2, 3, "len(weights)=4"},
		{"negative batch", nil, nil, -1, 3, "negative"},
		{"id out of range", append(append([]int64{}, ids[:5]...), features+3), w, 2, 3, path},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := p.RunLinear(ctx, c.ids, c.w, c.b, c.l)
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("RunLinear: %v, want error containing %q", err, c.wantErr)
			}
			t.Logf("%v", err)
		})
	}
	// The pool still works after ORT rejected a run.
	if _, err := p.RunLinear(ctx, ids, w, 2, 3); err != nil {
		t.Fatalf("RunLinear after errors: %v", err)
	}
}

func TestNewSessionPoolErrors(t *testing.T) {
	_, path := testModel(t, 8, 10, 3)
	initORT(t)
	missing := filepath.Join(t.TempDir(), "missing.onnx")
	bogus := writeFile(t, filepath.Join(t.TempDir(), "bogus.onnx"), "not a model")

	cases := []struct {
		name      string
		path      string
		in, out   []string
		opts      SessionOptions
		wantParts []string
	}{
		{"missing model", missing, linearNames.in, linearNames.out, SessionOptions{}, []string{"load model", missing}},
		{"corrupt model", bogus, linearNames.in, linearNames.out, SessionOptions{}, []string{"load model", bogus}},
		{"wrong input", path, []string{"ids", onnxgraph.InputWeights}, linearNames.out, SessionOptions{},
			[]string{`no input "ids"`, onnxgraph.InputIDs}},
		{"wrong output", path, linearNames.in, []string{"probs"}, SessionOptions{}, []string{`no output "probs"`, onnxgraph.OutputProbs}},
		{"no names", path, nil, linearNames.out, SessionOptions{}, []string{"at least one input"}},
		{"negative pool", path, linearNames.in, linearNames.out, SessionOptions{PoolSize: -1}, []string{"negative"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := NewSessionPool(c.path, c.in, c.out, c.opts)
			if err == nil {
				p.Close()
				t.Fatal("NewSessionPool succeeded")
			}
			for _, w := range c.wantParts {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q: %v", w, err)
				}
			}
		})
	}

	// A pool bound to names that do not fit RunLinear refuses it clearly.
	swapped, err := NewSessionPool(path, []string{onnxgraph.InputWeights, onnxgraph.InputIDs}, linearNames.out, SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer swapped.Close()
	if _, err := swapped.RunLinear(context.Background(), []int64{1}, []float32{1}, 1, 1); err == nil ||
		!strings.Contains(err.Error(), "want a ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 tensor") {
		t.Fatalf("RunLinear with swapped inputs: %v", err)
	}
}

// TestCUDAFallsBackToCPU: asking for CUDA where the ONNX Runtime build or
// the machine has none must still give working sessions, on the CPU. (The
// npm onnxruntime-node library CI uses ships no CUDA provider.)
func TestCUDAFallsBackToCPU(t *testing.T) {
	const features, classes = 20, 3
	m, path := testModel(t, 3, features, classes)
	p := newPool(t, path, SessionOptions{Provider: ProviderCUDA})
	if p.Provider() != ProviderCPU {
		t.Skipf("this machine has a working CUDA provider (%s); the fallback path is not reachable here", p.Provider())
	}
	ids, w := randomInputs(5, features, 4, 6)
	got, err := p.RunLinear(context.Background(), ids, w, 4, 6)
	if err != nil {
		t.Fatal(err)
	}
	if err := compare(m, ids, w, 4, 6, got); err != nil {
		t.Fatal(err)
	}
	if _, err := NewSessionPool(path, linearNames.in, linearNames.out, SessionOptions{Provider: "tpu"}); err == nil {
		t.Error("unknown provider accepted")
	}
}
