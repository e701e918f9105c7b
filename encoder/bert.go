// Package encoder converts a BERT-family checkpoint (BERT or MPNet:
// config.json + safetensors weights + WordPiece vocab, as
// sentence-transformers and Hugging Face ship them) into an ONNX sentence
// encoder written from Go: embeddings, N transformer layers, mean (or
// [CLS]) pooling and optional L2 normalisation, so neither PyTorch nor a
// Python exporter is needed.
package encoder

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/triage-ml/triage/internal/onnxgraph"
)

// Graph input and output names of a converted encoder.
const (
	InputIDs      = "input_ids"          // int64 [batch, sequence]
	InputMask     = "attention_mask"     // int64 [batch, sequence]
	OutputEmbed   = "sentence_embedding" // float32 [batch, hidden]
	PoolingMean   = "mean"
	PoolingCLS    = "cls"
	maskNegative  = -10000 // added to masked attention scores; exp underflows to 0 in float32
	poolCountEps  = 1e-9   // sentence-transformers' clamp on the token count
	normalizeEps  = 1e-12  // torch.nn.functional.normalize's clamp on the norm
	maxHiddenSize = 1 << 14
)

// BertConfig is the part of config.json the graph depends on.
type BertConfig struct {
	ModelType             string  `json:"model_type"`
	HiddenSize            int     `json:"hidden_size"`
	NumHiddenLayers       int     `json:"num_hidden_layers"`
	NumAttentionHeads     int     `json:"num_attention_heads"`
	IntermediateSize      int     `json:"intermediate_size"`
	HiddenAct             string  `json:"hidden_act"`
	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	TypeVocabSize         int     `json:"type_vocab_size"`
	VocabSize             int     `json:"vocab_size"`
	LayerNormEps          float64 `json:"layer_norm_eps"`
	PositionEmbeddingType string  `json:"position_embedding_type"`
	// RelativeAttentionNumBuckets is MPNet's relative position bias size.
	RelativeAttentionNumBuckets int `json:"relative_attention_num_buckets"`
}

// Architectures the converter reads (config.json's model_type).
const (
	ArchBert  = "bert"
	ArchMPNet = "mpnet"
)

// MPNet's fixed relative-position bucketing (transformers' MPNetEncoder
// calls it with these values whatever config.json says) and its padding
// index, after which position ids start.
const (
	mpnetBuckets     = 32
	mpnetMaxDistance = 128
	mpnetPaddingIdx  = 1
)

func (c BertConfig) architecture() string {
	if c.ModelType == ArchMPNet {
		return ArchMPNet
	}
	return ArchBert
}

// MaxTokens is the longest input the position table covers: MPNet's
// positions start after its padding index.
func (c BertConfig) MaxTokens() int {
	if c.architecture() == ArchMPNet {
		return c.MaxPositionEmbeddings - (mpnetPaddingIdx + 1)
	}
	return c.MaxPositionEmbeddings
}

// ReadBertConfig reads and checks dir/config.json.
func ReadBertConfig(dir string) (BertConfig, error) {
	var c BertConfig
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read model config: %w", err)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("read model config %q: %w", path, err)
	}
	if c.LayerNormEps == 0 {
		c.LayerNormEps = 1e-12
	}
	if err := c.validate(); err != nil {
		return c, fmt.Errorf("model config %q: %w", path, err)
	}
	return c, nil
}

func (c BertConfig) validate() error {
	var errs []error
	switch c.ModelType {
	case ArchBert, "":
		if c.TypeVocabSize < 1 {
			errs = append(errs, fmt.Errorf("type_vocab_size %d must be at least 1", c.TypeVocabSize))
		}
	case ArchMPNet:
		if b := c.RelativeAttentionNumBuckets; b != 0 && b != mpnetBuckets {
			errs = append(errs, fmt.Errorf("relative_attention_num_buckets %d is not supported (want %d)", b, mpnetBuckets))
		}
	default:
		// Another architecture's fields mean nothing here: say only this.
		return fmt.Errorf("model_type %q is not supported; Triage converts BERT-architecture checkpoints (model_type \"bert\" or \"mpnet\")", c.ModelType)
	}
	if c.HiddenAct != "gelu" && c.HiddenAct != "" {
		errs = append(errs, fmt.Errorf("hidden_act %q is not supported (want gelu)", c.HiddenAct))
	}
	if c.PositionEmbeddingType != "" && c.PositionEmbeddingType != "absolute" {
		errs = append(errs, fmt.Errorf("position_embedding_type %q is not supported (want absolute)", c.PositionEmbeddingType))
	}
	if c.HiddenSize <= 0 || c.HiddenSize > maxHiddenSize || c.NumAttentionHeads <= 0 || c.HiddenSize%c.NumAttentionHeads != 0 {
		errs = append(errs, fmt.Errorf("hidden_size %d must be positive and divisible by num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads))
	}
	if c.NumHiddenLayers <= 0 || c.IntermediateSize <= 0 || c.MaxTokens() <= 0 || c.VocabSize <= 0 {
		errs = append(errs, fmt.Errorf("num_hidden_layers, intermediate_size, max_position_embeddings and vocab_size must be positive (got %d, %d, %d, %d)",
			c.NumHiddenLayers, c.IntermediateSize, c.MaxPositionEmbeddings, c.VocabSize))
	}
	return errors.Join(errs...)
}

// GraphOptions choose the sentence pooling.
type GraphOptions struct {
	Pooling   string // PoolingMean (default) or PoolingCLS
	Normalize bool   // L2-normalise the pooled vector
	// MaxLength is the longest input the graph takes (0 = MaxTokens); it
	// sizes MPNet's table of relative-position buckets.
	MaxLength int
}

// layout is where an architecture keeps each layer's weights and how its
// embeddings and attention differ.
type layout struct {
	query, key, value, attnOut, attnNorm string // under encoder.layer.N.
	positionOffset                       int64  // first position id
	tokenType                            bool   // a token-type table to fold in
	relativeBias                         bool   // MPNet's bucketed position bias
}

var layouts = map[string]layout{
	ArchBert: {query: "attention.self.query", key: "attention.self.key", value: "attention.self.value",
		attnOut: "attention.output.dense", attnNorm: "attention.output.LayerNorm", tokenType: true},
	ArchMPNet: {query: "attention.attn.q", key: "attention.attn.k", value: "attention.attn.v",
		attnOut: "attention.attn.o", attnNorm: "attention.LayerNorm", positionOffset: mpnetPaddingIdx + 1, relativeBias: true},
}

// weights reads named tensors, remembering the first error so the graph
// code below reads as the model's structure rather than error plumbing.
type weights struct {
	st     *Safetensors
	prefix string
	err    error
}

func (w *weights) get(name string, shape ...int64) []float32 {
	if w.err != nil {
		return nil
	}
	v, err := w.st.Float32(w.prefix+name, shape...)
	if err != nil {
		w.err = err
	}
	return v
}

// linear reads a torch Linear weight [out, in] and returns it transposed to
// [in, out], the layout MatMul(x, W) wants, optionally scaled.
func (w *weights) linear(name string, in, out int, scale float32) []float32 {
	src := w.get(name, int64(out), int64(in))
	if src == nil {
		return nil
	}
	dst := make([]float32, in*out)
	for o := 0; o < out; o++ {
		for i := 0; i < in; i++ {
			dst[i*out+o] = src[o*in+i] * scale
		}
	}
	return dst
}

func scaled(v []float32, s float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x * s
	}
	return out
}

// BuildEncoder writes the encoder graph:
//
//	x = LayerNorm(word[input_ids] + (position + token_type[0])[:L])
//	repeat N: x = LayerNorm(x + Attn(x)); x = LayerNorm(x + W2·gelu(W1·x))
//	pooled = Σ mask·x / Σ mask  (or x[:,0])
//	sentence_embedding = pooled / max(‖pooled‖, 1e-12)
//
// Q, K and V share one [H, 3H] MatMul, and 1/√d_head is folded into the
// query weights, so each layer runs fewer, larger kernels. Single-sentence
// inputs always have token type 0, so that row is folded into the position
// table and the graph takes no token_type_ids. MPNet has no token types,
// starts positions after its padding index, and adds to every layer's
// attention scores one bias per head looked up by the bucketed distance
// between the two tokens.
func BuildEncoder(st *Safetensors, c BertConfig, o GraphOptions) (*onnxgraph.Builder, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	lay := layouts[c.architecture()]
	maxLen := int64(c.MaxTokens())
	if o.MaxLength != 0 {
		if o.MaxLength < 2 || o.MaxLength > c.MaxTokens() {
			return nil, fmt.Errorf("max length %d must be in [2, %d]", o.MaxLength, c.MaxTokens())
		}
		maxLen = int64(o.MaxLength)
	}
	w := &weights{st: st}
	for _, prefix := range []string{"bert.", "mpnet."} { // a task model's checkpoint
		if !st.Has("embeddings.word_embeddings.weight") && st.Has(prefix+"embeddings.word_embeddings.weight") {
			w.prefix = prefix
		}
	}
	H, I, P, V := int64(c.HiddenSize), int64(c.IntermediateSize), int64(c.MaxPositionEmbeddings), int64(c.VocabSize)
	nh := int64(c.NumAttentionHeads)
	dh := H / nh
	eps := float32(c.LayerNormEps)
	g := onnxgraph.NewBuilder("triage_bert_encoder")
	g.Input(InputIDs, onnxgraph.ElemInt64, "batch", "sequence")
	g.Input(InputMask, onnxgraph.ElemInt64, "batch", "sequence")

	// Constants.
	one := g.Float("one", nil, []float32{1})
	half := g.Float("half", nil, []float32{0.5})
	sqrt2 := g.Float("sqrt2", nil, []float32{float32(math.Sqrt2)})
	negMask := g.Float("mask_negative", nil, []float32{maskNegative})
	zero1 := g.Int64("zero_1d", []int64{1}, []int64{0})
	axis0 := zero1
	axis1 := g.Int64("axis_1", []int64{1}, []int64{1})
	axis2 := g.Int64("axis_2", []int64{1}, []int64{2})
	axes12 := g.Int64("axes_1_2", []int64{2}, []int64{1, 2})
	headShape := g.Int64("head_shape", []int64{4}, []int64{0, 0, nh, dh})
	mergeShape := g.Int64("merge_shape", []int64{3}, []int64{0, 0, H})
	qkvSplit := g.Int64("qkv_split", []int64{3}, []int64{H, H, H})

	// Embeddings.
	word := w.get("embeddings.word_embeddings.weight", V, H)
	pos := w.get("embeddings.position_embeddings.weight", P, H)
	if w.err != nil {
		return nil, w.err
	}
	// Only the rows inputs reach, the token-type row folded in.
	posType := append([]float32(nil), pos[lay.positionOffset*H:(lay.positionOffset+maxLen)*H]...)
	if lay.tokenType {
		typ := w.get("embeddings.token_type_embeddings.weight", int64(c.TypeVocabSize), H)
		if w.err != nil {
			return nil, w.err
		}
		for i := range posType {
			posType[i] += typ[i%int(H)]
		}
	}
	wordT := g.Float("word_embeddings", []int64{V, H}, word)
	posT := g.Float("position_type_embeddings", []int64{maxLen, H}, posType)
	layerNorm := func(x, name string) string {
		gamma := w.get(name+".weight", H)
		beta := w.get(name+".bias", H)
		return g.Node("LayerNormalization", "layernorm", []string{x,
			g.Float(name+".weight", []int64{H}, gamma), g.Float(name+".bias", []int64{H}, beta)},
			onnxgraph.IntAttr("axis", -1), onnxgraph.FloatAttr("epsilon", eps))
	}
	seqLen := g.Node("Shape", "seq_len", []string{InputIDs}, onnxgraph.IntAttr("start", 1), onnxgraph.IntAttr("end", 2))
	posRows := g.Node("Slice", "positions", []string{posT, zero1, seqLen, axis0})
	tok := g.Node("Gather", "word", []string{wordT, InputIDs}, onnxgraph.IntAttr("axis", 0))
	x := layerNorm(g.Node("Add", "embed", []string{tok, posRows}), "embeddings.LayerNorm")

	// Attention mask as an additive bias [B,1,1,L].
	maskF := g.Node("Cast", "mask_float", []string{InputMask}, onnxgraph.IntAttr("to", onnxgraph.ElemFloat))
	inv := g.Node("Sub", "mask_inverse", []string{one, maskF})
	bias := g.Node("Unsqueeze", "mask_bias", []string{g.Node("Mul", "mask_scaled", []string{inv, negMask}), axes12})
	if lay.relativeBias {
		// [1,nh,L,L] from a precomputed [maxLen,maxLen] bucket table, added
		// to the mask bias once for all layers.
		table := g.Int64("relative_buckets", []int64{maxLen, maxLen}, relativeBuckets(int(maxLen)))
		relW := g.Float("relative_attention_bias", []int64{mpnetBuckets, nh}, w.get("encoder.relative_attention_bias.weight", mpnetBuckets, nh))
		if w.err != nil {
			return nil, w.err
		}
		ends := g.Node("Concat", "seq_len_2d", []string{seqLen, seqLen}, onnxgraph.IntAttr("axis", 0))
		buckets := g.Node("Slice", "buckets", []string{table, g.Int64("zeros_2", []int64{2}, []int64{0, 0}), ends,
			g.Int64("axes_0_1", []int64{2}, []int64{0, 1})})
		perHead := g.Node("Transpose", "relative_bias_heads", []string{
			g.Node("Gather", "relative_bias", []string{relW, buckets}, onnxgraph.IntAttr("axis", 0))}, onnxgraph.IntsAttr("perm", 2, 0, 1))
		bias = g.Node("Add", "attention_bias", []string{bias, g.Node("Unsqueeze", "relative_bias_4d", []string{perHead, zero1})})
	}

	qScale := float32(1 / math.Sqrt(float64(dh)))
	for l := 0; l < c.NumHiddenLayers; l++ {
		p := fmt.Sprintf("encoder.layer.%d.", l)
		q := w.linear(p+lay.query+".weight", int(H), int(H), qScale)
		k := w.linear(p+lay.key+".weight", int(H), int(H), 1)
		v := w.linear(p+lay.value+".weight", int(H), int(H), 1)
		qb := scaled(w.get(p+lay.query+".bias", H), qScale)
		kb := w.get(p+lay.key+".bias", H)
		vb := w.get(p+lay.value+".bias", H)
		if w.err != nil {
			return nil, w.err
		}
		qkv := make([]float32, 0, 3*H*H)
		for i := int64(0); i < H; i++ { // row i of [H, 3H] = [q_i | k_i | v_i]
			qkv = append(qkv, q[i*H:(i+1)*H]...)
			qkv = append(qkv, k[i*H:(i+1)*H]...)
			qkv = append(qkv, v[i*H:(i+1)*H]...)
		}
		qkvBias := append(append(append([]float32{}, qb...), kb...), vb...)
		proj := g.Node("Add", "qkv", []string{
			g.Node("MatMul", "qkv_matmul", []string{x, g.Float(p+"attention.qkv.weight", []int64{H, 3 * H}, qkv)}),
			g.Float(p+"attention.qkv.bias", []int64{3 * H}, qkvBias)})
		parts := g.NodeN("Split", "qkv_split", []string{proj, qkvSplit}, 3, onnxgraph.IntAttr("axis", 2))
		heads := func(t string, perm ...int64) string {
			return g.Node("Transpose", "heads", []string{g.Node("Reshape", "split_heads", []string{t, headShape})}, onnxgraph.IntsAttr("perm", perm...))
		}
		qh := heads(parts[0], 0, 2, 1, 3) // [B,nh,L,dh]
		kh := heads(parts[1], 0, 2, 3, 1) // [B,nh,dh,L]
		vh := heads(parts[2], 0, 2, 1, 3) // [B,nh,L,dh]
		scores := g.Node("Add", "scores", []string{g.Node("MatMul", "qk", []string{qh, kh}), bias})
		probs := g.Node("Softmax", "attention", []string{scores}, onnxgraph.IntAttr("axis", -1))
		ctx := g.Node("MatMul", "context", []string{probs, vh})
		merged := g.Node("Reshape", "merge_heads", []string{
			g.Node("Transpose", "context_t", []string{ctx}, onnxgraph.IntsAttr("perm", 0, 2, 1, 3)), mergeShape})
		attnOut := g.Node("Add", "attn_out", []string{
			g.Node("MatMul", "attn_out_matmul", []string{merged, g.Float(p+lay.attnOut+".weight", []int64{H, H},
				w.linear(p+lay.attnOut+".weight", int(H), int(H), 1))}),
			g.Float(p+lay.attnOut+".bias", []int64{H}, w.get(p+lay.attnOut+".bias", H))})
		x1 := layerNorm(g.Node("Add", "attn_residual", []string{attnOut, x}), p+lay.attnNorm)

		h := g.Node("Add", "ffn_in", []string{
			g.Node("MatMul", "ffn_in_matmul", []string{x1, g.Float(p+"intermediate.dense.weight", []int64{H, I},
				w.linear(p+"intermediate.dense.weight", int(H), int(I), 1))}),
			g.Float(p+"intermediate.dense.bias", []int64{I}, w.get(p+"intermediate.dense.bias", I))})
		// Exact GELU, x·½·(1+erf(x/√2)), in the node order ORT's GeluFusion matches.
		erf := g.Node("Erf", "gelu_erf", []string{g.Node("Div", "gelu_div", []string{h, sqrt2})})
		gelu := g.Node("Mul", "gelu", []string{g.Node("Mul", "gelu_mul", []string{h, g.Node("Add", "gelu_add", []string{erf, one})}), half})
		out := g.Node("Add", "ffn_out", []string{
			g.Node("MatMul", "ffn_out_matmul", []string{gelu, g.Float(p+"output.dense.weight", []int64{I, H},
				w.linear(p+"output.dense.weight", int(I), int(H), 1))}),
			g.Float(p+"output.dense.bias", []int64{H}, w.get(p+"output.dense.bias", H))})
		x = layerNorm(g.Node("Add", "ffn_residual", []string{out, x1}), p+"output.LayerNorm")
		if w.err != nil {
			return nil, w.err
		}
	}

	var pooled string
	switch o.Pooling {
	case PoolingMean, "":
		m3 := g.Node("Unsqueeze", "mask_3d", []string{maskF, axis2})
		sum := g.Node("ReduceSum", "pool_sum", []string{g.Node("Mul", "masked", []string{x, m3}), axis1}, onnxgraph.IntAttr("keepdims", 0))
		cnt := g.Node("ReduceSum", "pool_count", []string{m3, axis1}, onnxgraph.IntAttr("keepdims", 0))
		cnt = g.Node("Max", "pool_count_clamped", []string{cnt, g.Float("count_eps", nil, []float32{poolCountEps})})
		pooled = g.Node("Div", "mean_pool", []string{sum, cnt})
	case PoolingCLS:
		pooled = g.Node("Gather", "cls_pool", []string{x, g.Int64("zero", nil, []int64{0})}, onnxgraph.IntAttr("axis", 1))
	default:
		return nil, fmt.Errorf("pooling %q: use %q or %q", o.Pooling, PoolingMean, PoolingCLS)
	}
	if o.Normalize {
		norm := g.Node("ReduceL2", "norm", []string{pooled}, onnxgraph.IntsAttr("axes", 1), onnxgraph.IntAttr("keepdims", 1))
		norm = g.Node("Max", "norm_clamped", []string{norm, g.Float("norm_eps", nil, []float32{normalizeEps})})
		pooled = g.Node("Div", "normalized", []string{pooled, norm})
	}
	g.Rename(pooled, OutputEmbed)
	g.Output(OutputEmbed, onnxgraph.ElemFloat, "batch", int(H))
	return g, nil
}

// relativeBuckets is MPNet's relative_position_bucket for every (query i,
// key j) pair of an n-token input, row-major: distances under 8 get a
// bucket each, longer ones share log-spaced buckets up to 128, and the sign
// picks a half of the 32. The logarithm is taken in float32, step by step,
// as PyTorch computes it, so the truncation lands on the same bucket.
func relativeBuckets(n int) []int64 {
	const half = mpnetBuckets / 2
	const exact = half / 2
	logRange := float32(math.Log(float64(mpnetMaxDistance) / float64(exact)))
	out := make([]int64, n*n)
	for i := range n {
		for j := range n {
			d := i - j // -(key - query)
			b := 0
			if d < 0 {
				b, d = half, -d
			}
			if d < exact {
				b += d
			} else {
				ratio := float32(float32(d) / float32(exact))
				l := float32(math.Log(float64(ratio)))
				scaledLog := float32(float32(l/logRange) * float32(half-exact))
				b += min(exact+int(scaledLog), half-1)
			}
			out[i*n+j] = int64(b)
		}
	}
	return out
}
