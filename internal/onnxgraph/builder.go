package onnxgraph

import (
	"fmt"
	"math"
	"sort"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Builder assembles an arbitrary opset-17 graph (nodes, initializers,
// typed inputs and outputs) for models larger than LinearSoftmax, such as a
// BERT encoder converted from safetensors. It encodes as it goes, so a
// 100 MB model costs one copy of its weights, not several.
type Builder struct {
	name    string
	nodes   []byte
	inits   []byte
	inputs  []byte
	outputs []byte
	seq     int
	err     error
}

// NewBuilder starts a graph called name.
func NewBuilder(name string) *Builder { return &Builder{name: name} }

// Attr is one node attribute; build it with IntAttr, IntsAttr or FloatAttr.
type Attr struct {
	name string
	typ  uint64
	i    int64
	f    float32
	ints []int64
	s    string
}

// AttributeProto field numbers and types beyond the INT case encode.go uses.
const (
	attrF           protowire.Number = 2
	attrS           protowire.Number = 4
	attrInts        protowire.Number = 8
	attrTypeFloat                    = 1
	attrTypeString                   = 3
	attrTypeInts                     = 7
	dataTypeInt32                    = 6
	dataTypeBool                     = 9
	ElemFloat                        = dataTypeFloat
	ElemInt64                        = dataTypeInt64
	ElemInt32                        = dataTypeInt32
	ElemBool                         = dataTypeBool
	defaultDomainOp                  = ""
)

func IntAttr(name string, v int64) Attr     { return Attr{name: name, typ: attrTypeInt, i: v} }
func IntsAttr(name string, v ...int64) Attr { return Attr{name: name, typ: attrTypeInts, ints: v} }
func FloatAttr(name string, v float32) Attr { return Attr{name: name, typ: attrTypeFloat, f: v} }
func StringAttr(name, v string) Attr        { return Attr{name: name, typ: attrTypeString, s: v} }
func (a Attr) encode() []byte {
	var b []byte
	b = appendStringField(b, attrName, a.name)
	switch a.typ {
	case attrTypeFloat:
		b = protowire.AppendTag(b, attrF, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.f))
	case attrTypeInt:
		b = appendVarintField(b, attrI, uint64(a.i))
	case attrTypeString:
		b = appendStringField(b, attrS, a.s)
	case attrTypeInts:
		for _, v := range a.ints {
			b = appendVarintField(b, attrInts, uint64(v))
		}
	}
	return appendVarintField(b, attrType, a.typ)
}

// Node appends op(inputs) and returns its single output's name, generated
// from hint so graphs stay readable in Netron.
func (g *Builder) Node(op, hint string, inputs []string, attrs ...Attr) string {
	return g.NodeN(op, hint, inputs, 1, attrs...)[0]
}

// NodeN appends an op with n outputs.
func (g *Builder) NodeN(op, hint string, inputs []string, n int, attrs ...Attr) []string {
	g.seq++
	name := fmt.Sprintf("%s_%d", hint, g.seq)
	outs := make([]string, n)
	for i := range outs {
		outs[i] = name
		if n > 1 {
			outs[i] = fmt.Sprintf("%s_%d", name, i)
		}
	}
	var b []byte
	for _, s := range inputs {
		b = appendStringField(b, nodeInput, s)
	}
	for _, s := range outs {
		b = appendStringField(b, nodeOutput, s)
	}
	b = appendStringField(b, nodeName, name)
	b = appendStringField(b, nodeOpType, op)
	for _, a := range attrs {
		b = appendBytesField(b, nodeAttribute, a.encode())
	}
	g.nodes = appendBytesField(g.nodes, graphNode, b)
	return outs
}

// Rename appends an Identity so a computed value gets a public name (graph
// outputs must be named for callers).
func (g *Builder) Rename(from, to string) {
	var b []byte
	b = appendStringField(b, nodeInput, from)
	b = appendStringField(b, nodeOutput, to)
	b = appendStringField(b, nodeName, "identity_"+to)
	b = appendStringField(b, nodeOpType, "Identity")
	g.nodes = appendBytesField(g.nodes, graphNode, b)
}

// Float adds a float32 initializer and returns its name.
func (g *Builder) Float(name string, dims []int64, vals []float32) string {
	if n := numel(dims); n != len(vals) {
		g.fail(fmt.Errorf("initializer %q: %d values for shape %v (%d)", name, len(vals), dims, n))
		return name
	}
	for i, v := range vals {
		if !isFinite(v) {
			g.fail(fmt.Errorf("initializer %q: value %d is %v", name, i, v))
			return name
		}
	}
	g.inits = appendFloatTensor(g.inits, name, dims, vals)
	return name
}

// Int64 adds an int64 initializer and returns its name.
func (g *Builder) Int64(name string, dims []int64, vals []int64) string {
	if n := numel(dims); n != len(vals) {
		g.fail(fmt.Errorf("initializer %q: %d values for shape %v (%d)", name, len(vals), dims, n))
		return name
	}
	g.inits = appendInt64Tensor(g.inits, name, dims, vals)
	return name
}

// Input declares a graph input; dims are symbolic names or fixed sizes.
func (g *Builder) Input(name string, elem uint64, dims ...any) {
	g.inputs = appendBytesField(g.inputs, graphInput, encodeValueInfo(name, elem, toDims(dims)...))
}

// Output declares a graph output.
func (g *Builder) Output(name string, elem uint64, dims ...any) {
	g.outputs = appendBytesField(g.outputs, graphOutput, encodeValueInfo(name, elem, toDims(dims)...))
}

func toDims(ds []any) []dim {
	out := make([]dim, len(ds))
	for i, d := range ds {
		switch v := d.(type) {
		case string:
			out[i] = dimParam(v)
		case int:
			out[i] = dimValue(int64(v))
		case int64:
			out[i] = dimValue(v)
		}
	}
	return out
}

func numel(dims []int64) int {
	n := 1
	for _, d := range dims {
		n *= int(d)
	}
	return n
}

func (g *Builder) fail(err error) {
	if g.err == nil {
		g.err = err
	}
}

// Model is the metadata written around a Builder's graph.
type Model struct {
	ProducerVersion string
	DocString       string
	Metadata        map[string]string
}

// Marshal serialises the graph as a ModelProto (IR 8, opset 17).
func (g *Builder) Marshal(m Model) ([]byte, error) {
	if g.err != nil {
		return nil, fmt.Errorf("onnxgraph: %s: %w", g.name, g.err)
	}
	for k, v := range m.Metadata {
		if k == "" || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return nil, fmt.Errorf("onnxgraph: %s: bad metadata entry %q", g.name, k)
		}
	}
	graph := make([]byte, 0, len(g.nodes)+len(g.inits)+len(g.inputs)+len(g.outputs)+64)
	graph = append(graph, g.nodes...)
	graph = appendStringField(graph, graphName, g.name)
	graph = append(graph, g.inits...)
	graph = append(graph, g.inputs...)
	graph = append(graph, g.outputs...)
	if len(graph) > maxModelBytes-1<<16 {
		return nil, fmt.Errorf("onnxgraph: %s: graph of %d bytes exceeds the 2 GiB protobuf limit", g.name, len(graph))
	}

	return m.wrap(graph), nil
}

// wrap puts a serialised GraphProto into a ModelProto: IR version, producer,
// opset import and metadata (sorted by key, so output is deterministic).
func (m Model) wrap(graph []byte) []byte {
	b := make([]byte, 0, len(graph)+len(m.DocString)+1024)
	b = appendVarintField(b, modelIRVersion, irVersion)
	b = appendStringField(b, modelProducerName, producerName)
	if m.ProducerVersion != "" {
		b = appendStringField(b, modelProducerVersion, m.ProducerVersion)
	}
	if m.DocString != "" {
		b = appendStringField(b, modelDocString, m.DocString)
	}
	b = appendBytesField(b, modelGraph, graph)
	var opset []byte
	opset = appendStringField(opset, opsetDomain, "") // "" is the default ai.onnx domain
	opset = appendVarintField(opset, opsetVersion, Opset)
	b = appendBytesField(b, modelOpsetImport, opset)
	keys := make([]string, 0, len(m.Metadata))
	for k := range m.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var e []byte
		e = appendStringField(e, entryKey, k)
		e = appendStringField(e, entryValue, m.Metadata[k])
		b = appendBytesField(b, modelMetadataProps, e)
	}
	return b
}
