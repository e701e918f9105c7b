package featurizer

import "testing"

func BenchmarkTransform(b *testing.B) {
	f := fitted(&testing.T{}, DefaultConfig(), "I am still waiting on my card?", "What can I do if my card still hasn't arrived after 2 weeks?")
	text := "What can I do if my card still hasn't arrived after 2 weeks?"
	b.ReportAllocs()
	for b.Loop() {
		f.Transform(text)
	}
}
