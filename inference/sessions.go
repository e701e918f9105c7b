package inference

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// SessionOptions configures every session in a SessionPool.
type SessionOptions struct {
	// IntraOpThreads is each session's intra-op thread count; 0 = ORT default
	// (one per physical core). Every pooled session gets its own thread pool,
	// so with PoolSize > 1 consider cores/PoolSize to avoid oversubscription.
	IntraOpThreads int
	InterOpThreads int // 0 = ORT default
	PoolSize       int // sessions in the pool; 0 -> 1
	// Provider is the execution provider: ProviderCPU (default) or
	// ProviderCUDA, which falls back to the CPU, with a warning, when the
	// CUDA provider library or a GPU is missing.
	Provider string
	// CUDADevice is the GPU index for ProviderCUDA.
	CUDADevice int
}

// Execution providers.
const (
	ProviderCPU  = "cpu"
	ProviderCUDA = "cuda"
)

// ErrPoolClosed is returned by RunLinear once Close has been called.
var ErrPoolClosed = errors.New("inference: session pool is closed")

// slot is one session plus the RunOptions used to abort its in-flight run
// when the caller's context is cancelled.
type slot struct {
	sess *ort.DynamicAdvancedSession
	run  *ort.RunOptions
}

// SessionPool holds N ORT DynamicAdvancedSessions of one model for concurrent
// Run calls. An ORT session is safe for concurrent Run, but separate sessions
// give callers independent scratch memory and abortable RunOptions, and bound
// how many runs compete for CPU at once.
type SessionPool struct {
	modelPath   string
	inputNames  []string
	outputNames []string
	inputInfo   []ort.InputOutputInfo // same order as inputNames
	outputInfo  []ort.InputOutputInfo // same order as outputNames
	size        int
	provider    string // the execution provider actually in use

	free      chan *slot    // idle sessions; capacity size
	done      chan struct{} // closed by Close to wake waiters
	closeOnce sync.Once
	closeErr  error
}

// NewSessionPool loads modelPath into opts.PoolSize sessions bound to the
// given input and output names. InitORT must have succeeded first.
func NewSessionPool(modelPath string, inputNames, outputNames []string, opts SessionOptions) (*SessionPool, error) {
	p, err := newSessionPool(modelPath, inputNames, outputNames, opts)
	if err != nil && opts.Provider == ProviderCUDA {
		// A CUDA provider library that loads can still fail when sessions
		// are created (no GPU, bad device id): fall back as promised.
		slog.Warn("CUDA sessions could not be created; falling back to CPU", "model", modelPath, "error", err.Error())
		opts.Provider = ProviderCPU
		return newSessionPool(modelPath, inputNames, outputNames, opts)
	}
	return p, err
}

func newSessionPool(modelPath string, inputNames, outputNames []string, opts SessionOptions) (*SessionPool, error) {
	if LoadedORTLibrary() == "" {
		return nil, fmt.Errorf("load model %q: ONNX Runtime not initialised; call InitORT first", modelPath)
	}
	if len(inputNames) == 0 || len(outputNames) == 0 {
		// onnxruntime_go indexes names[0] when running, so empty lists would panic.
		return nil, fmt.Errorf("load model %q: need at least one input and one output name (got %d, %d)",
			modelPath, len(inputNames), len(outputNames))
	}
	if opts.PoolSize < 0 || opts.IntraOpThreads < 0 || opts.InterOpThreads < 0 {
		return nil, fmt.Errorf("load model %q: negative SessionOptions %+v", modelPath, opts)
	}
	size := max(opts.PoolSize, 1)

	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("load model %q: session options: %w", modelPath, err)
	}
	// ORT copies the options into each session, so they can go when we return.
	defer so.Destroy()
	if err := so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll); err != nil {
		return nil, fmt.Errorf("load model %q: graph optimisation level: %w", modelPath, err)
	}
	if opts.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(opts.IntraOpThreads); err != nil {
			return nil, fmt.Errorf("load model %q: intra-op threads: %w", modelPath, err)
		}
	}
	if opts.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(opts.InterOpThreads); err != nil {
			return nil, fmt.Errorf("load model %q: inter-op threads: %w", modelPath, err)
		}
	}

	provider, err := chooseProvider(so, opts)
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w", modelPath, err)
	}

	// Check the names up front: ORT would only reject a wrong name at Run time.
	ins, outs, err := ort.GetInputOutputInfoWithOptions(modelPath, so)
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w", modelPath, err)
	}
	inInfo, err := pickInfo(ins, inputNames, "input")
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w", modelPath, err)
	}
	outInfo, err := pickInfo(outs, outputNames, "output")
	if err != nil {
		return nil, fmt.Errorf("load model %q: %w", modelPath, err)
	}

	p := &SessionPool{
		modelPath:   modelPath,
		inputNames:  append([]string(nil), inputNames...),
		outputNames: append([]string(nil), outputNames...),
		inputInfo:   inInfo,
		outputInfo:  outInfo,
		size:        size,
		provider:    provider,
		free:        make(chan *slot, size),
		done:        make(chan struct{}),
	}
	for i := 0; i < size; i++ {
		s, err := newSlot(modelPath, p.inputNames, p.outputNames, so)
		if err != nil {
			p.destroyFree()
			return nil, fmt.Errorf("load model %q: session %d of %d: %w", modelPath, i+1, size, err)
		}
		p.free <- s
	}
	slog.Info("onnx runtime sessions ready", "model", modelPath, "provider", provider, "sessions", size,
		"intra_op_threads", opts.IntraOpThreads)
	return p, nil
}

func newSlot(modelPath string, inputNames, outputNames []string, so *ort.SessionOptions) (*slot, error) {
	sess, err := ort.NewDynamicAdvancedSession(modelPath, inputNames, outputNames, so)
	if err != nil {
		return nil, err
	}
	run, err := ort.NewRunOptions()
	if err != nil {
		sess.Destroy()
		return nil, fmt.Errorf("run options: %w", err)
	}
	return &slot{sess: sess, run: run}, nil
}

func (s *slot) destroy() error {
	return errors.Join(s.sess.Destroy(), s.run.Destroy())
}

// destroyFree destroys every idle slot; only for construction failures.
func (p *SessionPool) destroyFree() {
	for {
		select {
		case s := <-p.free:
			s.destroy()
		default:
			return
		}
	}
}

func pickInfo(all []ort.InputOutputInfo, names []string, kind string) ([]ort.InputOutputInfo, error) {
	picked := make([]ort.InputOutputInfo, len(names))
	for i, name := range names {
		found := false
		for _, info := range all {
			if info.Name == name {
				picked[i], found = info, true
				break
			}
		}
		if !found {
			have := make([]string, len(all))
			for j, info := range all {
				have[j] = info.Name
			}
			return nil, fmt.Errorf("model has no %s %q (its %ss: %q)", kind, name, kind, have)
		}
	}
	return picked, nil
}

// chooseProvider appends the requested execution provider to so. ORT
// reports a missing CUDA provider library or driver when the provider is
// appended, so the CPU fallback happens here, before any session exists.
func chooseProvider(so *ort.SessionOptions, opts SessionOptions) (string, error) {
	switch opts.Provider {
	case "", ProviderCPU:
		return ProviderCPU, nil
	case ProviderCUDA:
	default:
		return "", fmt.Errorf("execution provider %q: use %q or %q", opts.Provider, ProviderCPU, ProviderCUDA)
	}
	cuda, err := ort.NewCUDAProviderOptions()
	if err == nil {
		defer cuda.Destroy()
		err = cuda.Update(map[string]string{"device_id": fmt.Sprint(opts.CUDADevice)})
	}
	if err == nil {
		err = so.AppendExecutionProviderCUDA(cuda)
	}
	if err != nil {
		slog.Warn("CUDA execution provider unavailable; falling back to CPU", "error", err.Error())
		return ProviderCPU, nil
	}
	return ProviderCUDA, nil
}

// Provider is the execution provider the pool's sessions use.
func (p *SessionPool) Provider() string { return p.provider }

// Size is the number of sessions in the pool.
func (p *SessionPool) Size() int { return p.size }

// NumClasses is the static last dimension of the first output, or 0 when
// the model leaves it dynamic.
func (p *SessionPool) NumClasses() int {
	d := p.outputInfo[0].Dimensions
	if len(d) == 0 || d[len(d)-1] <= 0 {
		return 0
	}
	return int(d[len(d)-1])
}

// checkLinear verifies the pool's bindings fit RunLinear's contract.
func (p *SessionPool) checkLinear() error {
	if len(p.inputInfo) != 2 || len(p.outputInfo) != 1 {
		return fmt.Errorf("RunLinear needs 2 inputs (ids, weights) and 1 output, pool has %d and %d",
			len(p.inputInfo), len(p.outputInfo))
	}
	want := []struct {
		info ort.InputOutputInfo
		typ  ort.TensorElementDataType
	}{
		{p.inputInfo[0], ort.TensorElementDataTypeInt64},
		{p.inputInfo[1], ort.TensorElementDataTypeFloat},
		{p.outputInfo[0], ort.TensorElementDataTypeFloat},
	}
	for _, w := range want {
		if w.info.OrtValueType != ort.ONNXTypeTensor || w.info.DataType != w.typ {
			return fmt.Errorf("RunLinear: %q is %s, want a %s tensor", w.info.Name, w.info.String(), w.typ)
		}
	}
	return nil
}

// RunLinear runs a model whose inputs are int64 ids [batch,length] and
// float32 weights [batch,length] and whose single output is float32
// [batch, numClasses]; it returns the output row-major. It blocks for a free
// session; ctx cancellation ends the wait and also aborts a run in progress.
func (p *SessionPool) RunLinear(ctx context.Context, ids []int64, weights []float32, batch, length int) ([]float32, error) {
	return p.runLinear(ctx, ids, weights, batch, length, nil)
}

// runLinearInto is RunLinear writing into out, which must hold exactly
// batch*NumClasses values: ORT then fills it in place instead of allocating
// an output that onnxruntime_go copies into a new slice.
func (p *SessionPool) runLinearInto(ctx context.Context, ids []int64, weights []float32, batch, length int, out []float32) error {
	if c := p.NumClasses(); c == 0 || len(out) != batch*c {
		got, err := p.runLinear(ctx, ids, weights, batch, length, nil)
		if err == nil && len(got) != len(out) {
			err = fmt.Errorf("run model %q: %d probabilities, want %d", p.modelPath, len(got), len(out))
		}
		if err != nil {
			return err
		}
		copy(out, got)
		return nil
	}
	_, err := p.runLinear(ctx, ids, weights, batch, length, out)
	return err
}

func (p *SessionPool) runLinear(ctx context.Context, ids []int64, weights []float32, batch, length int, out []float32) ([]float32, error) {
	if err := p.checkLinear(); err != nil {
		return nil, fmt.Errorf("run model %q: %w", p.modelPath, err)
	}
	if batch < 0 || length < 0 {
		return nil, fmt.Errorf("run model %q: negative batch (%d) or length (%d)", p.modelPath, batch, length)
	}
	if length != 0 && batch > math.MaxInt/length {
		return nil, fmt.Errorf("run model %q: batch*length overflows (%d x %d)", p.modelPath, batch, length)
	}
	if n := batch * length; len(ids) != n || len(weights) != n {
		return nil, fmt.Errorf("run model %q: len(ids)=%d, len(weights)=%d, want batch*length=%d",
			p.modelPath, len(ids), len(weights), n)
	}
	if batch == 0 {
		select {
		case <-p.done:
			return nil, fmt.Errorf("run model %q: %w", p.modelPath, ErrPoolClosed)
		default:
			return []float32{}, nil
		}
	}

	return runPair(p, ctx, ids, weights, batch, length, out)
}

// RunEncoder runs a sentence encoder whose inputs are int64 token ids and
// attention mask [batch,length] and whose output is float32 [batch, dim].
func (p *SessionPool) RunEncoder(ctx context.Context, ids, mask []int64, batch, length int) ([]float32, error) {
	if len(p.inputInfo) != 2 || len(p.outputInfo) != 1 {
		return nil, fmt.Errorf("run encoder %q: need 2 inputs (ids, mask) and 1 output, pool has %d and %d",
			p.modelPath, len(p.inputInfo), len(p.outputInfo))
	}
	if n := batch * length; batch <= 0 || length <= 0 || len(ids) != n || len(mask) != n {
		return nil, fmt.Errorf("run encoder %q: len(ids)=%d, len(mask)=%d, want batch*length=%d*%d",
			p.modelPath, len(ids), len(mask), batch, length)
	}
	return runPair(p, ctx, ids, mask, batch, length, nil)
}

// runPair runs the session on two [batch,length] tensors and returns its
// single float32 [batch, k] output: dst when given (len batch*k, filled in
// place), else a new slice.
func runPair[A, B ort.TensorData](p *SessionPool, ctx context.Context, a []A, b []B, batch, length int, dst []float32) ([]float32, error) {
	s, err := p.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("run model %q: waiting for a free session: %w", p.modelPath, err)
	}
	defer func() { p.free <- s }()

	shape := ort.NewShape(int64(batch), int64(length))
	aT, err := ort.NewTensor(shape, a)
	if err != nil {
		return nil, fmt.Errorf("run model %q: %s tensor: %w", p.modelPath, p.inputNames[0], err)
	}
	defer aT.Destroy()
	bT, err := ort.NewTensor(shape, b)
	if err != nil {
		return nil, fmt.Errorf("run model %q: %s tensor: %w", p.modelPath, p.inputNames[1], err)
	}
	defer bT.Destroy()

	// Without dst, ORT allocates the output: onnxruntime_go copies it into a
	// Go-backed tensor, whose slice stays valid after Destroy releases the
	// OrtValue.
	outputs := []ort.Value{nil}
	if dst != nil {
		dT, err := ort.NewTensor(ort.NewShape(int64(batch), int64(len(dst)/batch)), dst)
		if err != nil {
			return nil, fmt.Errorf("run model %q: %s tensor: %w", p.modelPath, p.outputNames[0], err)
		}
		outputs[0] = dT
	}
	runErr := s.runAbortable(ctx, []ort.Value{aT, bT}, outputs)
	if outputs[0] != nil {
		defer outputs[0].Destroy()
	}
	if runErr != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("run model %q: aborted: %w (ort: %v)", p.modelPath, ctxErr, runErr)
		}
		return nil, fmt.Errorf("run model %q: %w", p.modelPath, runErr)
	}

	out, ok := outputs[0].(*ort.Tensor[float32])
	if !ok {
		return nil, fmt.Errorf("run model %q: output %q is %T, want float32 tensor", p.modelPath, p.outputNames[0], outputs[0])
	}
	got := out.GetShape()
	if len(got) != 2 || got[0] != int64(batch) {
		return nil, fmt.Errorf("run model %q: output %q has shape %v, want [%d, k]",
			p.modelPath, p.outputNames[0], got, batch)
	}
	return out.GetData(), nil
}

// runAbortable runs the session, setting ORT's terminate flag if ctx is
// cancelled mid-run, and clears the flag afterwards so the slot stays usable.
func (s *slot) runAbortable(ctx context.Context, inputs, outputs []ort.Value) error {
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(terminated)
		s.run.Terminate()
	})
	err := s.sess.RunWithOptions(inputs, outputs, s.run)
	if !stop() {
		<-terminated
		if uerr := s.run.UnsetTerminate(); uerr != nil {
			return errors.Join(err, fmt.Errorf("reset run options: %w", uerr))
		}
	}
	return err
}

// acquire takes an idle session, or fails when ctx ends or the pool closes.
func (p *SessionPool) acquire(ctx context.Context) (*slot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-p.done:
		return nil, ErrPoolClosed
	default:
	}
	select {
	case s := <-p.free:
		select {
		case <-p.done:
			// Close is draining the pool; hand the session to it.
			p.free <- s
			return nil, ErrPoolClosed
		default:
			return s, nil
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.done:
		return nil, ErrPoolClosed
	}
}

// Close waits for in-flight runs to finish, then destroys every session.
// Waiting callers get ErrPoolClosed. Safe to call more than once.
func (p *SessionPool) Close() error {
	p.closeOnce.Do(func() {
		close(p.done)
		var errs []error
		for i := 0; i < p.size; i++ {
			s := <-p.free
			if err := s.destroy(); err != nil {
				errs = append(errs, err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			p.closeErr = fmt.Errorf("close model %q: %w", p.modelPath, err)
		}
	})
	return p.closeErr
}
