package schemas

import (
	"encoding/json"
	"strings"
	"testing"
)

// benchInputs are representative input records: a short support query, one
// with every optional field, and long texts near the consumer's limit.
var benchInputs = []struct {
	name string
	raw  []byte
}{
	{"minimal", []byte(`{"id":"q-000123","text":"I still have not received my new card, how long does it take?"}`)},
	{"full", []byte(`{"id":"q-000123","text":"I still have not received my new card, how long does it take?","source":"web-chat",` +
		`"created_at":"2026-01-02T15:04:05.123Z","metadata":{"locale":"en-GB","customer_tier":"gold","attempt":2,"tags":["card","delivery"]}}`)},
	{"text4KiB", []byte(`{"id":"q-000123","text":"` + strings.Repeat("The parcel never arrived. ", 4096/26) + `"}`)},
	{"text64KiB", []byte(`{"id":"q-000123","text":"` + strings.Repeat("The parcel never arrived. ", 65536/26) + `"}`)},
}

// BenchmarkDecodeInput is the consumer's per-record cost of parsing and
// validating an input.
func BenchmarkDecodeInput(b *testing.B) {
	for _, in := range benchInputs {
		b.Run(in.name, func(b *testing.B) {
			if _, err := DecodeInput(in.raw); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(in.raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeInput(in.raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnmarshalInput is the baseline: json.Unmarshal into Input with no
// validation at all.
func BenchmarkUnmarshalInput(b *testing.B) {
	for _, in := range benchInputs {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.raw)))
			b.ReportAllocs()
			for b.Loop() {
				var v Input
				if err := json.Unmarshal(in.raw, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeInputInvalid is the cost of rejecting a record.
func BenchmarkDecodeInputInvalid(b *testing.B) {
	raw := []byte(`{"text":"","created_at":"yesterday","extra":1}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeInput(raw); err == nil {
			b.Fatal("accepted")
		}
	}
}
