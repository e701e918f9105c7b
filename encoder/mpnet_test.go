package encoder

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"
)

// TestRelativeBucketsMatchTransformers compares MPNet's bucket table with
// transformers' MPNetEncoder.relative_position_bucket (PyTorch, computed
// once): spot values across the exact and the log-spaced ranges, and the
// SHA-256 of the whole 400×400 table as little-endian int64 — one bucket
// off anywhere would shift attention for that distance.
func TestRelativeBucketsMatchTransformers(t *testing.T) {
	const n = 400
	b := relativeBuckets(n)
	spots := []struct{ i, j, want int }{
		{0, 0, 0}, {0, 1, 17}, {0, 7, 23}, {0, 8, 24}, {0, 11, 24}, {0, 12, 25}, {0, 15, 25}, {0, 16, 26},
		{0, 23, 27}, {0, 31, 27}, {0, 32, 28}, {0, 45, 28}, {0, 46, 29}, {0, 63, 29}, {0, 64, 30}, {0, 90, 30},
		{0, 91, 31}, {0, 127, 31}, {0, 128, 31}, {0, 399, 31},
		{1, 0, 1}, {7, 0, 7}, {8, 0, 8}, {16, 0, 10}, {32, 0, 12}, {64, 0, 14}, {127, 0, 15}, {128, 0, 15}, {399, 0, 15},
	}
	for _, s := range spots {
		if got := b[s.i*n+s.j]; got != int64(s.want) {
			t.Errorf("bucket(query %d, key %d) = %d, transformers %d", s.i, s.j, got, s.want)
		}
	}
	raw := make([]byte, 8*len(b))
	for i, v := range b {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	sum := sha256.Sum256(raw)
	if got, want := hex.EncodeToString(sum[:]), "d5a58496263ba9abd7e45ed87b973dbb857bc26df1be15e933962de67b6c3153"; got != want {
		t.Errorf("table sha256 %s, transformers' %s", got, want)
	}
}

// TestConfigArchitectures: BERT and MPNet configs are read with their own
// rules; anything else is refused with the one reason that matters.
func TestConfigArchitectures(t *testing.T) {
	base := BertConfig{HiddenSize: 64, NumHiddenLayers: 2, NumAttentionHeads: 4, IntermediateSize: 128,
		MaxPositionEmbeddings: 130, VocabSize: 100, HiddenAct: "gelu"}
	cases := []struct {
		name   string
		edit   func(*BertConfig)
		err    string // "" = accepted
		tokens int    // MaxTokens when accepted
	}{
		{"bert", func(c *BertConfig) { c.ModelType, c.TypeVocabSize = "bert", 2 }, "", 130},
		{"bert without token types", func(c *BertConfig) { c.ModelType = "bert" }, "type_vocab_size 0", 0},
		{"mpnet", func(c *BertConfig) { c.ModelType, c.RelativeAttentionNumBuckets = "mpnet", 32 }, "", 128},
		{"mpnet, buckets unset", func(c *BertConfig) { c.ModelType = "mpnet" }, "", 128},
		{"mpnet, other buckets", func(c *BertConfig) { c.ModelType, c.RelativeAttentionNumBuckets = "mpnet", 64 }, "relative_attention_num_buckets 64", 0},
		{"roberta", func(c *BertConfig) { c.ModelType = "roberta" }, `model_type "roberta" is not supported`, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := base
			c.edit(&cfg)
			err := cfg.validate()
			switch {
			case c.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("error %v, want one mentioning %q", err, c.err)
			case c.err == "" && cfg.MaxTokens() != c.tokens:
				t.Errorf("MaxTokens %d, want %d", cfg.MaxTokens(), c.tokens)
			}
		})
	}
}
