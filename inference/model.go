package inference

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/triage-ml/triage/batch"
	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/drift"
	"github.com/triage-ml/triage/featurizer"
)

// ModelOptions configure how a bundle is served.
type ModelOptions struct {
	ORTLib  string         // explicit library path; "" = FindORTLibrary's search
	Session SessionOptions // pool size and threads
	TopK    int            // scores returned per prediction; 0 = 5
	// EncoderThreads is the intra-op thread count of encoder sessions (0 =
	// ORT default, one per core): the transformer is worth every core,
	// while the linear head is cheapest single-threaded.
	EncoderThreads int
}

// ModelRef names the model that made a prediction.
type ModelRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Score is one label's probability.
type Score struct {
	Label string  `json:"label"`
	Score float32 `json:"score"`
}

// Prediction is one text's classification.
type Prediction struct {
	Label      string   `json:"label"`
	Confidence float32  `json:"confidence"`
	Scores     []Score  `json:"scores"`
	Model      ModelRef `json:"model"`
	// Truncated reports that the text was longer than the featurisation
	// window and only its beginning was classified.
	Truncated bool `json:"truncated,omitempty"`
	// Abstained reports that the text looks out of scope: its abstention
	// score is under the model's threshold. Label stays the best guess.
	Abstained bool `json:"abstained,omitempty" doc:"true when the text looks out of scope for the model (its abstention score is under the model's threshold); label is then only the best guess"`
	// Signals feed the drift monitor; not part of the REST response.
	Signals Signals `json:"-"`
}

// margin is top-1 minus top-2 (1 with a single score).
func margin(scores []Score) float32 {
	if len(scores) < 2 {
		return 1
	}
	return scores[0].Score - scores[1].Score
}

// Model serves one bundle through a pool of ONNX Runtime sessions: the
// linear head, preceded for encoder and hybrid bundles by the sentence
// encoder, whose embedding enters the head as extra features.
type Model struct {
	bundle *bundle.Bundle
	pool   *SessionPool
	enc    *Encoder // nil for linear bundles
	topK   int
	calib  calibrator
	unk    int64 // the encoder's [UNK] id, -1 without an encoder
}

// Open loads and verifies the bundle in dir and starts its sessions.
func Open(dir string, opts ModelOptions) (*Model, error) {
	b, err := bundle.Load(dir)
	if err != nil {
		return nil, err
	}
	lib, err := FindORTLibrary(opts.ORTLib)
	if err != nil {
		return nil, err
	}
	if err := InitORT(lib); err != nil {
		return nil, err
	}
	g := b.Manifest.Graph
	var enc *Encoder
	if es := b.Manifest.Encoder; b.Manifest.Graph.Kind != bundle.KindLinear {
		enc, err = OpenEncoder(EncoderConfig{
			ModelPath: b.Path(bundle.EncoderFile), VocabPath: b.Path(bundle.VocabFile),
			Lowercase: es.Lowercase, StripAccents: es.StripAccents, ClsToken: es.ClsToken, SepToken: es.SepToken,
			MaxLength: es.MaxLength, Dim: es.Dim,
			InputIDs: es.InputIDs, InputMask: es.InputMask, Output: es.Output,
			Variant: es.Variant,
		}, opts)
		if err != nil {
			return nil, fmt.Errorf("load model %q: %w", dir, err)
		}
	}
	pool, err := NewSessionPool(b.ModelPath, []string{g.InputIDs, g.InputWeight}, []string{g.Output}, opts.Session)
	if err != nil {
		if enc != nil {
			enc.Close()
		}
		return nil, fmt.Errorf("load model %q: %w", dir, err)
	}
	topK := cmp.Or(opts.TopK, 5)
	m := &Model{bundle: b, pool: pool, enc: enc, topK: min(topK, len(b.Manifest.Labels)), calib: newCalibrator(b.Manifest), unk: -1}
	if enc != nil {
		m.unk = enc.UnknownID()
	}
	return m, nil
}

// Transform turns one text into what PredictInputs takes: n-gram features
// and/or WordPiece tokens, by the bundle's kind. It is pure CPU work, meant
// to run in the caller's goroutine, off the ONNX Runtime thread.
func (m *Model) Transform(text string) Input {
	var in Input
	m.TransformTo(&in, text)
	return in
}

// TransformTo is Transform into in, reusing its feature buffers: a caller
// that keeps one Input per batch slot (the consumer) featurises without
// allocating. Every field of in is overwritten.
func (m *Model) TransformTo(in *Input, text string) {
	in.Truncated, in.Tokens = false, nil
	if m.bundle.Featurizer != nil {
		m.bundle.Featurizer.TransformTo(&in.Features, text)
		in.Truncated = in.Features.Truncated
	} else {
		in.Features = featurizer.Vector{}
	}
	if m.enc != nil {
		var cut bool
		in.Tokens, cut = m.enc.Tokens(text)
		in.Truncated = in.Truncated || cut
	}
	var oov float64
	in.Length, oov = drift.MeasureInput(text, in.Features, in.Tokens, m.unk)
	in.OOVRate = float32(oov)
}

// Manifest returns the bundle's model.json.
func (m *Model) Manifest() bundle.Manifest { return m.bundle.Manifest }

// Featurizer returns the bundle's featuriser.
func (m *Model) Featurizer() *featurizer.Featurizer { return m.bundle.Featurizer }

// Ref names the model.
func (m *Model) Ref() ModelRef {
	return ModelRef{Name: m.bundle.Manifest.Name, Version: m.bundle.Manifest.Version}
}

// Close releases the ONNX Runtime sessions.
func (m *Model) Close() error {
	if m.enc != nil {
		return errors.Join(m.pool.Close(), m.enc.Close())
	}
	return m.pool.Close()
}

// ErrNoTexts is returned for an empty batch.
var ErrNoTexts = errors.New("no texts to classify")

// Predict classifies texts in one ONNX Runtime call.
func (m *Model) Predict(ctx context.Context, texts []string) ([]Prediction, error) {
	if len(texts) == 0 {
		return nil, ErrNoTexts
	}
	return m.PredictInputs(ctx, m.TransformAll(texts))
}

// Distribution returns every label's probability for each text,
// [len(texts)][labels] row-major in Manifest().Labels order: the whole
// distribution Predict cuts to its top k (what a distilled head learns from).
func (m *Model) Distribution(ctx context.Context, texts []string) ([]float32, error) {
	if len(texts) == 0 {
		return nil, ErrNoTexts
	}
	heads, _, _, err := m.headVectors(ctx, m.TransformAll(texts))
	if err != nil {
		return nil, err
	}
	return m.Probabilities(ctx, heads)
}

// TransformAll transforms texts, spread over all CPUs for large batches.
func (m *Model) TransformAll(texts []string) []Input {
	return m.TransformAllTo(nil, texts)
}

// TransformAllTo is TransformAll into dst's elements, reusing their
// feature buffers (dst grows as needed), so a caller that cycles a few
// such slices featurises without per-text allocations.
func (m *Model) TransformAllTo(dst []Input, texts []string) []Input {
	dst = slices.Grow(dst[:0], len(texts))[:len(texts)]
	parallel(len(texts), func(i int) { m.TransformTo(&dst[i], texts[i]) })
	return dst
}

// PredictInputs classifies texts already transformed, so callers can
// featurise and tokenise off the ONNX Runtime thread.
func (m *Model) PredictInputs(ctx context.Context, ins []Input) ([]Prediction, error) {
	if len(ins) == 0 {
		return nil, ErrNoTexts
	}
	heads, dists, emb, err := m.headVectors(ctx, ins)
	if err != nil {
		return nil, err
	}
	probs, err := m.Probabilities(ctx, heads)
	if err != nil {
		return nil, err
	}
	out := decode(m.bundle.Manifest.Labels, m.Ref(), m.topK, ins, probs)
	C := len(m.bundle.Manifest.Labels)
	for i := range out {
		s := &out[i].Signals
		row := probs[i*C : (i+1)*C]
		best := argmax(row)
		s.Calibrated = m.calib.top1(row, best)
		s.EmbedDist = float32(math.NaN())
		if dists != nil {
			s.EmbedDist = dists[i]
		}
		s.AbstainScore = s.Calibrated
		if a := m.bundle.Manifest.Abstain; a != nil {
			var e []float32
			if emb != nil {
				d := m.bundle.Manifest.Encoder.Dim
				e = emb[i*d : (i+1)*d]
			}
			score := a.Of(float64(s.Calibrated), best, e)
			s.AbstainScore = float32(score)
			out[i].Abstained = a.Abstains(score)
		}
	}
	return out, nil
}

// headVectors runs the encoder, when the bundle has one, and appends each
// text's scaled embedding to its n-gram features as the head expects; it
// also returns each embedding's distance to the training centroid and the
// embeddings themselves ([n][dim], unscaled; both nil without an encoder).
func (m *Model) headVectors(ctx context.Context, ins []Input) ([]featurizer.Vector, []float32, []float32, error) {
	vs := make([]featurizer.Vector, len(ins))
	for i, in := range ins {
		vs[i] = in.Features
	}
	if m.enc == nil {
		return vs, nil, nil, nil
	}
	tokens := make([][]int64, len(ins))
	for i, v := range ins {
		if len(v.Tokens) == 0 {
			return nil, nil, nil, fmt.Errorf("predict with %s: text %d has no tokens (transform texts with Model.Transform)", m.bundle.Manifest.Name, i)
		}
		tokens[i] = v.Tokens
	}
	emb, err := m.enc.Embed(ctx, tokens)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("predict with %s %s: %w", m.bundle.Manifest.Name, m.bundle.Manifest.Version, err)
	}
	es := m.bundle.Manifest.Encoder
	dists := make([]float32, len(ins))
	for i := range dists {
		dists[i] = float32(drift.CosineDistance(emb[i*es.Dim:(i+1)*es.Dim], es.Centroid))
	}
	return featurizer.AppendDense(vs, emb, es.Dim, es.FeatureOffset, es.Scale), dists, emb, nil
}

// Encoder is the bundle's sentence encoder, or nil for linear bundles.
func (m *Model) Encoder() *Encoder { return m.enc }

// Probabilities runs ONNX Runtime on featurised texts and returns the
// [len(vs)][classes] probability matrix, row-major.
//
// Batches are cut into chunks of texts of similar length, each within a
// budget of padded features: the graph takes padded [batch, length] inputs
// and gathers a [batch, length, classes] tensor, so one very long text
// would otherwise pad every row, and a large chunk's gathered tensor falls
// out of cache (chunks of 64 Banking77 texts ran ~1.7x slower per text
// than chunks within the budget; BenchmarkLinearGraphForms).
func (m *Model) Probabilities(ctx context.Context, vs []featurizer.Vector) ([]float32, error) {
	C := len(m.bundle.Manifest.Labels)
	out := make([]float32, len(vs)*C)
	if len(vs) <= 1 {
		if err := m.run(ctx, vs, out); err != nil {
			return nil, err
		}
		return out, nil
	}
	order := make([]int, len(vs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(len(vs[a].IDs), len(vs[b].IDs)) })
	lengths := make([]int, len(order))
	for i, j := range order {
		lengths[i] = max(len(vs[j].IDs), 1) // padded to at least 1
	}
	plan := planChunks(lengths, headCallOverhead, batch.Policy{MaxCount: lengthChunk, MaxTokens: max(headChunkValues/C, 1)})
	if len(plan) == 1 {
		if err := m.run(ctx, vs, out); err != nil {
			return nil, err
		}
		return out, nil
	}
	var chunk []featurizer.Vector
	var probs []float32
	for _, c := range plan {
		idx := order[c[0]:c[1]]
		chunk = chunk[:0]
		for _, i := range idx {
			chunk = append(chunk, vs[i])
		}
		probs = slices.Grow(probs[:0], len(idx)*C)[:len(idx)*C]
		if err := m.run(ctx, chunk, probs); err != nil {
			return nil, err
		}
		for j, i := range idx {
			copy(out[i*C:(i+1)*C], probs[j*C:(j+1)*C])
		}
	}
	return out, nil
}

// Chunking of head runs: at most lengthChunk texts and headChunkValues
// gathered [batch, length, classes] floats (512 KiB, about an L2 cache) per
// ORT call; headCallOverhead is a call's fixed cost in padded features.
const (
	lengthChunk      = 64
	headChunkValues  = 1 << 17
	headCallOverhead = 48
)

// run scores vs into out ([len(vs)][classes]).
func (m *Model) run(ctx context.Context, vs []featurizer.Vector, out []float32) error {
	p := packPool.Get().(*packed)
	defer packPool.Put(p)
	length := p.pad(vs)
	if err := m.pool.runLinearInto(ctx, p.ids, p.ws, len(vs), length, out); err != nil {
		return fmt.Errorf("predict with %s %s: %w", m.bundle.Manifest.Name, m.bundle.Manifest.Version, err)
	}
	return nil
}

// packed is one call's padded [batch, length] inputs, pooled: a chunk of
// long texts packs to hundreds of KB, otherwise allocated on every call.
// ORT reads the buffers in place, so they return to the pool only after
// the run.
type packed struct {
	ids []int64
	ws  []float32
}

var packPool = sync.Pool{New: func() any { return new(packed) }}

// pad lays vs out as featurizer.Batch does (rows zero-padded to the longest,
// length at least 1) and returns the length.
func (p *packed) pad(vs []featurizer.Vector) int {
	length := 1
	for _, v := range vs {
		length = max(length, len(v.IDs))
	}
	n := len(vs) * length
	p.ids = slices.Grow(p.ids[:0], n)[:n]
	p.ws = slices.Grow(p.ws[:0], n)[:n]
	for i, v := range vs {
		ids, ws := p.ids[i*length:(i+1)*length], p.ws[i*length:(i+1)*length]
		clear(ids[copy(ids, v.IDs):])
		clear(ws[copy(ws, v.Weights):])
	}
	return length
}

// decode turns the probability matrix into top-k predictions.
func decode(labels []string, ref ModelRef, k int, ins []Input, probs []float32) []Prediction {
	C := len(labels)
	out := make([]Prediction, len(ins))
	// One backing array for every prediction's scores; each slice is capped
	// so an append by a caller cannot run into its neighbour's.
	all := make([]Score, len(ins)*k)
	for i := range ins {
		row := probs[i*C : (i+1)*C]
		scores := topK(row, labels, all[i*k:i*k:(i+1)*k])
		out[i] = Prediction{Label: scores[0].Label, Confidence: scores[0].Score, Scores: scores, Model: ref, Truncated: ins[i].Truncated,
			Signals: Signals{Calibrated: scores[0].Score, Margin: margin(scores), Tokens: ins[i].Length, OOVRate: ins[i].OOVRate,
				EmbedDist: float32(math.NaN())}}
	}
	return out
}

// topK keeps the cap(out) best scores by insertion into out (length 0): O(C*k)
// with k small beats a full sort of C labels. Ties keep label order, so
// output is deterministic.
func topK(row []float32, labels []string, out []Score) []Score {
	k := cap(out)
	for c, p := range row {
		if len(out) == k && p <= out[k-1].Score {
			continue
		}
		if len(out) < k {
			out = append(out, Score{})
		}
		j := len(out) - 1
		for j > 0 && out[j-1].Score < p {
			out[j] = out[j-1]
			j--
		}
		out[j] = Score{Label: labels[c], Score: p}
	}
	return out
}
