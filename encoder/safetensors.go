package encoder

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
)

// Safetensors is a parsed .safetensors file: an 8-byte little-endian header
// length, a JSON header naming each tensor's dtype, shape and byte range,
// then the raw little-endian data.
type Safetensors struct {
	path    string
	data    []byte
	tensors map[string]tensorInfo
}

type tensorInfo struct {
	DType   string  `json:"dtype"`
	Shape   []int64 `json:"shape"`
	Offsets [2]int  `json:"data_offsets"`
}

// maxHeader bounds the JSON header so a corrupt length cannot make us
// allocate gigabytes.
const maxHeader = 100 << 20

// ReadSafetensors loads the whole file: BERT-base-sized checkpoints are a
// few hundred MB, and conversion touches every byte anyway.
func ReadSafetensors(path string) (*Safetensors, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read safetensors: %w", err)
	}
	if len(raw) < 8 {
		return nil, fmt.Errorf("read safetensors %q: file too short", path)
	}
	n := binary.LittleEndian.Uint64(raw[:8])
	if n > maxHeader || n > uint64(len(raw)-8) {
		return nil, fmt.Errorf("read safetensors %q: header length %d is invalid for a %d-byte file", path, n, len(raw))
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(raw[8:8+n], &hdr); err != nil {
		return nil, fmt.Errorf("read safetensors %q: header: %w", path, err)
	}
	st := &Safetensors{path: path, data: raw[8+n:], tensors: map[string]tensorInfo{}}
	for name, msg := range hdr {
		if name == "__metadata__" {
			continue
		}
		var ti tensorInfo
		if err := json.Unmarshal(msg, &ti); err != nil {
			return nil, fmt.Errorf("read safetensors %q: tensor %q: %w", path, name, err)
		}
		if ti.Offsets[0] < 0 || ti.Offsets[1] < ti.Offsets[0] || ti.Offsets[1] > len(st.data) {
			return nil, fmt.Errorf("read safetensors %q: tensor %q: byte range %v outside the %d-byte data section", path, name, ti.Offsets, len(st.data))
		}
		st.tensors[name] = ti
	}
	return st, nil
}

// Names lists the tensors, sorted.
func (s *Safetensors) Names() []string {
	out := make([]string, 0, len(s.tensors))
	for k := range s.tensors {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Has reports whether the file holds a tensor called name.
func (s *Safetensors) Has(name string) bool { _, ok := s.tensors[name]; return ok }

// Shape is a tensor's shape (nil when absent).
func (s *Safetensors) Shape(name string) []int64 { return s.tensors[name].Shape }

// Float32 returns a tensor as float32, converting F16 and BF16 (common for
// checkpoints saved in half precision), and checks its shape.
func (s *Safetensors) Float32(name string, shape ...int64) ([]float32, error) {
	ti, ok := s.tensors[name]
	if !ok {
		return nil, fmt.Errorf("tensor %q not in %s", name, s.path)
	}
	if !equalShape(ti.Shape, shape) {
		return nil, fmt.Errorf("tensor %q has shape %v, want %v", name, ti.Shape, shape)
	}
	n := 1
	for _, d := range ti.Shape {
		n *= int(d)
	}
	b := s.data[ti.Offsets[0]:ti.Offsets[1]]
	size := map[string]int{"F32": 4, "F16": 2, "BF16": 2}[ti.DType]
	if size == 0 {
		return nil, fmt.Errorf("tensor %q has dtype %s; want F32, F16 or BF16", name, ti.DType)
	}
	if len(b) != n*size {
		return nil, fmt.Errorf("tensor %q: %d bytes for %d %s values", name, len(b), n, ti.DType)
	}
	out := make([]float32, n)
	for i := range out {
		switch ti.DType {
		case "F32":
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		case "F16":
			out[i] = halfToFloat(binary.LittleEndian.Uint16(b[2*i:]))
		case "BF16":
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16)
		}
	}
	return out, nil
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// halfToFloat widens an IEEE 754 binary16 value.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: renormalise
		e := uint32(127 - 15 + 1)
		for frac&0x400 == 0 {
			frac <<= 1
			e--
		}
		frac &= 0x3ff
		return math.Float32frombits(sign | e<<23 | frac<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	default:
		return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
	}
}
