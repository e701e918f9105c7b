package onnxgraph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"

	"google.golang.org/protobuf/encoding/protowire"
)

// ReadLinearSoftmax reads back the weights and bias of a model written by
// Marshal, so a pure-Go reference can score exactly what ONNX Runtime runs
// (parity tests, benchmarks). It understands only what Marshal writes.
func ReadLinearSoftmax(path string) (*LinearSoftmax, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnxgraph: read %q: %w", path, err)
	}
	m, err := UnmarshalLinearSoftmax(raw)
	if err != nil {
		return nil, fmt.Errorf("onnxgraph: read %q: %w", path, err)
	}
	return m, nil
}

// UnmarshalLinearSoftmax decodes Marshal's output.
func UnmarshalLinearSoftmax(raw []byte) (*LinearSoftmax, error) {
	graph, err := field(raw, modelGraph)
	if err != nil {
		return nil, fmt.Errorf("model graph: %w", err)
	}
	tensors := map[string]struct {
		dims []int64
		data []byte
	}{}
	for len(graph) > 0 {
		num, typ, n := protowire.ConsumeTag(graph)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		graph = graph[n:]
		if num == graphInitializer && typ == protowire.BytesType {
			b, n := protowire.ConsumeBytes(graph)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			name, dims, data, err := decodeTensor(b)
			if err != nil {
				return nil, fmt.Errorf("initializer: %w", err)
			}
			tensors[name] = struct {
				dims []int64
				data []byte
			}{dims, data}
			graph = graph[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, graph)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		graph = graph[n:]
	}
	w, ok := tensors[nameW]
	b, ok2 := tensors[nameBias]
	if !ok || !ok2 || len(w.dims) != 2 || len(b.dims) != 1 || w.dims[1] != b.dims[0] {
		return nil, errors.New("not a Triage linear model (missing or mis-shaped weight/bias initializers)")
	}
	m := &LinearSoftmax{NumFeatures: int(w.dims[0]), NumClasses: int(w.dims[1]), Weights: floats(w.data), Bias: floats(b.data)}
	if err := m.checkShape(); err != nil {
		return nil, err
	}
	return m, nil
}

// field returns the first length-delimited field num of msg.
func field(msg []byte, num protowire.Number) ([]byte, error) {
	for len(msg) > 0 {
		n2, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		msg = msg[n:]
		if n2 == num && typ == protowire.BytesType {
			b, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return nil, protowire.ParseError(n)
			}
			return b, nil
		}
		n = protowire.ConsumeFieldValue(n2, typ, msg)
		if n < 0 {
			return nil, protowire.ParseError(n)
		}
		msg = msg[n:]
	}
	return nil, fmt.Errorf("field %d not found", num)
}

func decodeTensor(b []byte) (name string, dims []int64, data []byte, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", nil, nil, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == tensorDims && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return "", nil, nil, protowire.ParseError(n)
			}
			dims = append(dims, int64(v))
			b = b[n:]
		case num == tensorDims && typ == protowire.BytesType: // packed
			p, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", nil, nil, protowire.ParseError(n)
			}
			for len(p) > 0 {
				v, k := protowire.ConsumeVarint(p)
				if k < 0 {
					return "", nil, nil, protowire.ParseError(k)
				}
				dims = append(dims, int64(v))
				p = p[k:]
			}
			b = b[n:]
		case (num == tensorName || num == tensorRawData) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", nil, nil, protowire.ParseError(n)
			}
			if num == tensorName {
				name = string(v)
			} else {
				data = v
			}
			b = b[n:]
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return "", nil, nil, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return name, dims, data, nil
}

func floats(raw []byte) []float32 {
	out := make([]float32, len(raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out
}
