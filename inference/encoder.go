package inference

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	"github.com/triage-ml/triage/batch"
	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/tokenizer"
)

// EncoderConfig is what an Encoder needs: the ONNX file, the WordPiece
// vocabulary and casing, and the graph's names.
type EncoderConfig struct {
	ModelPath    string
	VocabPath    string
	Lowercase    bool
	StripAccents *bool
	ClsToken     string // "" = [CLS]
	SepToken     string // "" = [SEP]
	MaxLength    int    // tokens incl. [CLS] and [SEP]
	Dim          int
	InputIDs     string
	InputMask    string
	Output       string
	Variant      string // encoderdir.VariantFP32 or VariantInt8
}

// oneTextPerRun: dynamically quantised (int8) graphs quantise activations
// with one scale per tensor, so a text's embedding would depend on which
// texts share its batch (measured: up to a point of validation accuracy
// between batchings); they run each text alone.
func (c EncoderConfig) oneTextPerRun() bool { return c.Variant == encoderdir.VariantInt8 }

// chunkPolicy bounds one ONNX Runtime call: at most 64 texts and 8192
// padded tokens (bounds activation memory, ~20 MB per 1k tokens for a
// 384-wide model's FFN). No wait: chunks are planned from texts in hand.
var chunkPolicy = batch.Policy{MaxCount: 64, MaxTokens: 8192}

// chunkOverheadTokens is a Run call's fixed cost in token-equivalents, used
// to decide when splitting a batch by length saves more padding than the
// extra call costs.
const chunkOverheadTokens = 48

// Encoder turns texts into sentence embeddings: WordPiece in Go, the
// transformer in ONNX Runtime, texts grouped by length so a batch pads to
// the longest text of its group rather than of the whole batch.
type Encoder struct {
	cfg      EncoderConfig
	tok      *tokenizer.WordPiece
	pool     *SessionPool
	manifest *encoderdir.Manifest // set when opened from an encoder folder
}

// OpenEncoderDir opens a converted encoder directory (encoder.json) in the
// given variant (fp32 or int8).
func OpenEncoderDir(dir, variant string, opts ModelOptions) (*Encoder, error) {
	m, err := encoderdir.Read(dir)
	if err != nil {
		return nil, err
	}
	file, err := encoderdir.VariantFile(variant)
	if err != nil {
		return nil, err
	}
	if err := encoderdir.Verify(dir, m, file, encoderdir.VocabFile); err != nil {
		return nil, err
	}
	e, err := OpenEncoder(EncoderConfig{
		ModelPath: filepath.Join(dir, file), VocabPath: filepath.Join(dir, encoderdir.VocabFile),
		Lowercase: m.Lowercase, StripAccents: m.StripAccents, ClsToken: m.ClsToken, SepToken: m.SepToken,
		MaxLength: m.MaxLength, Dim: m.HiddenSize,
		InputIDs: m.InputIDs, InputMask: m.InputMask, Output: m.Output, Variant: variant,
	}, opts)
	if err != nil {
		return nil, err
	}
	e.manifest = m
	return e, nil
}

// Manifest is the encoder.json the encoder was opened with (nil when it was
// opened from a bundle).
func (e *Encoder) Manifest() *encoderdir.Manifest { return e.manifest }

// OpenEncoder loads the vocabulary and starts the encoder's sessions.
func OpenEncoder(cfg EncoderConfig, opts ModelOptions) (*Encoder, error) {
	if cfg.MaxLength < 2 || cfg.Dim <= 0 {
		return nil, fmt.Errorf("load encoder %q: max length %d and dim %d must be set", cfg.ModelPath, cfg.MaxLength, cfg.Dim)
	}
	// LoadVocab refuses a vocabulary without the opening and closing tokens.
	tok, err := tokenizer.LoadVocab(cfg.VocabPath, tokenizer.Options{Lowercase: cfg.Lowercase, StripAccents: cfg.StripAccents,
		ClsToken: cfg.ClsToken, SepToken: cfg.SepToken})
	if err != nil {
		return nil, fmt.Errorf("load encoder %q: %w", cfg.ModelPath, err)
	}
	lib, err := FindORTLibrary(opts.ORTLib)
	if err != nil {
		return nil, err
	}
	if err := InitORT(lib); err != nil {
		return nil, err
	}
	so := opts.Session
	so.IntraOpThreads = opts.EncoderThreads
	pool, err := NewSessionPool(cfg.ModelPath, []string{cfg.InputIDs, cfg.InputMask}, []string{cfg.Output}, so)
	if err != nil {
		return nil, fmt.Errorf("load encoder: %w", err)
	}
	if d := pool.NumClasses(); d != 0 && d != cfg.Dim {
		pool.Close()
		return nil, fmt.Errorf("load encoder %q: output has %d dimensions, manifest says %d", cfg.ModelPath, d, cfg.Dim)
	}
	return &Encoder{cfg: cfg, tok: tok, pool: pool}, nil
}

// UnknownID is the vocabulary's [UNK] id (-1 when it has none).
func (e *Encoder) UnknownID() int64 {
	if id, ok := e.tok.ID(tokenizer.UNK); ok {
		return int64(id)
	}
	return -1
}

// Dim is the embedding size.
func (e *Encoder) Dim() int { return e.cfg.Dim }

// Provider is the execution provider the encoder's sessions use.
func (e *Encoder) Provider() string { return e.pool.Provider() }

// Close releases the sessions.
func (e *Encoder) Close() error { return e.pool.Close() }

// Tokens returns text's ids with [CLS] and [SEP], truncated to the
// encoder's max length; truncated reports a cut.
func (e *Encoder) Tokens(text string) (ids []int64, truncated bool) {
	ids, truncated, err := e.tok.EncodeIDs(text, e.cfg.MaxLength)
	if err != nil { // only for a max length under 2, refused at load
		panic(err)
	}
	return ids, truncated
}

// TokenizeAll tokenises texts, in parallel for large batches.
func (e *Encoder) TokenizeAll(texts []string) [][]int64 {
	out := make([][]int64, len(texts))
	parallel(len(texts), func(i int) { out[i], _ = e.Tokens(texts[i]) })
	return out
}

// EmbedTexts tokenises and embeds texts; the result is [len(texts)][Dim].
func (e *Encoder) EmbedTexts(ctx context.Context, texts []string) ([]float32, error) {
	return e.Embed(ctx, e.TokenizeAll(texts))
}

// Embed runs the encoder on tokenised texts and returns [n][Dim] row-major.
func (e *Encoder) Embed(ctx context.Context, tokens [][]int64) ([]float32, error) {
	n := len(tokens)
	D := e.cfg.Dim
	out := make([]float32, n*D)
	if n == 0 {
		return out, nil
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
		if len(tokens[i]) == 0 || len(tokens[i]) > e.cfg.MaxLength {
			return nil, fmt.Errorf("embed: text %d has %d tokens, want 1..%d", i, len(tokens[i]), e.cfg.MaxLength)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(len(tokens[a]), len(tokens[b])) })
	lengths := make([]int, n)
	for i, j := range order {
		lengths[i] = len(tokens[j])
	}
	var ids, mask []int64
	policy := chunkPolicy
	if e.cfg.oneTextPerRun() {
		policy.MaxCount = 1
	}
	for _, c := range planChunks(lengths, chunkOverheadTokens, policy) {
		L := lengths[c[1]-1]
		B := c[1] - c[0]
		ids = slices.Grow(ids[:0], B*L)[:B*L]
		mask = slices.Grow(mask[:0], B*L)[:B*L]
		clear(ids)
		clear(mask) // [PAD] is id 0 in BERT vocabularies; the mask hides it either way
		for r, j := range order[c[0]:c[1]] {
			copy(ids[r*L:], tokens[j])
			for k := range tokens[j] {
				mask[r*L+k] = 1
			}
		}
		emb, err := e.pool.RunEncoder(ctx, ids, mask, B, L)
		if err != nil {
			return nil, fmt.Errorf("embed: %w", err)
		}
		if len(emb) != B*D {
			return nil, fmt.Errorf("embed: encoder returned %d values for %d texts of dim %d", len(emb), B, D)
		}
		for r, j := range order[c[0]:c[1]] {
			copy(out[j*D:(j+1)*D], emb[r*D:(r+1)*D])
		}
	}
	return out, nil
}

// planChunks splits lengths (sorted ascending) into runs [lo,hi) that
// minimise Σ(overhead + count·maxLength): the padded tokens computed plus a
// per-call cost, so similar lengths share a call and one long text does not
// pad a whole batch. A chunk stays within p's MaxCount texts and MaxTokens
// padded tokens, except that a text too long for MaxTokens runs alone.
// Exact by dynamic programming; n is a batch, so O(n·k) with k ≤ MaxCount
// is cheap.
func planChunks(lengths []int, overhead int, p batch.Policy) [][2]int {
	n := len(lengths)
	best := make([]int, n+1)
	from := make([]int, n+1)
	for i := 1; i <= n; i++ {
		best[i] = -1
		L := lengths[i-1]
		for j := i - 1; j >= 0; j-- {
			if k := i - j; k > 1 && !p.Fits(k, k*L) {
				break
			}
			c := best[j] + overhead + (i-j)*L
			if best[i] < 0 || c < best[i] {
				best[i], from[i] = c, j
			}
		}
	}
	var chunks [][2]int
	for i := n; i > 0; i = from[i] {
		chunks = append(chunks, [2]int{from[i], i})
	}
	slices.Reverse(chunks)
	return chunks
}

// parallel runs f(0..n-1) over the CPUs when n is large enough to pay for
// the goroutines.
func parallel(n int, f func(int)) {
	workers := min(runtime.GOMAXPROCS(0), n/16)
	if workers <= 1 {
		for i := range n {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				f(i)
			}
		})
	}
	wg.Wait()
}
