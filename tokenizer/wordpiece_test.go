package tokenizer

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

const testVocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nmy\ncard\nhas\nnot\narrive\n##d\n!\n?\n,\nun\n##want\n##ed\nwa\n##nt\ncafe\n我\n的\nσας\ni\n##̇\n"

func newTest(t *testing.T, lower bool) *WordPiece {
	t.Helper()
	w, err := ReadVocab(strings.NewReader(testVocab), Options{Lowercase: lower})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func tokens(w *WordPiece, ids []int32) []string {
	var out []string
	for _, id := range ids {
		out = append(out, w.Token(id))
	}
	return out
}

func TestTokenize(t *testing.T) {
	w := newTest(t, true)
	cases := []struct{ in, want string }{
		{"My card has NOT arrived!", "my card has not arrive ##d !"},
		{"unwanted,wanted?", "un ##want ##ed , wa ##nt ##ed ?"},
		{"Café", "cafe"},                           // accent stripped with lower-casing
		{"我的卡", "我 的 [UNK]"},                       // CJK ideographs split one per token
		{"my\u200bcard\x00 has", "[UNK] has"},      // format/control characters removed: "mycard" is unknown
		{"ΣΑΣ", "[UNK]"},                           // lower-cased rune by rune: σασ, not σας
		{strings.Repeat("a", 101), "[UNK]"},        // over the per-word limit
		{"\xff\xfe card", "card"},                  // invalid UTF-8 replaced, then dropped
		{"card\u00a0has\u3000not", "card has not"}, // Unicode spaces split words
	}
	for _, c := range cases {
		if got := strings.Join(tokens(w, w.Tokenize(c.in)), " "); got != c.want {
			t.Errorf("Tokenize(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestEncode(t *testing.T) {
	w := newTest(t, true)
	e, err := w.Encode("my card has not arrived", 6, 8)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.IDs, []int64{2, 4, 5, 6, 7, 3, 0, 0}) || !e.Truncated {
		t.Errorf("ids %v truncated %v", e.IDs, e.Truncated)
	}
	if !slices.Equal(e.AttentionMask, []int64{1, 1, 1, 1, 1, 1, 0, 0}) || len(e.TypeIDs) != 8 {
		t.Errorf("mask %v types %v", e.AttentionMask, e.TypeIDs)
	}
	if _, err := w.Encode("x", 1, 0); err == nil {
		t.Error("max length 1 accepted")
	}
	if _, err := ReadVocab(strings.NewReader("a\nb\n"), Options{}); err == nil {
		t.Error("vocabulary without [UNK] accepted")
	}
}

func TestPreTokenize(t *testing.T) {
	got := PreTokenize("hello, world!! $5 a-b")
	want := []string{"hello", ",", "world", "!", "!", "$", "5", "a", "-", "b"}
	if !slices.Equal(got, want) {
		t.Errorf("PreTokenize = %q, want %q", got, want)
	}
}

func TestLowercaseMatchesRustCharMapping(t *testing.T) {
	if got := lowercase("İSTANBUL ΣΑΣ"); got != "i\u0307stanbul σασ" {
		t.Errorf("lowercase = %q", got)
	}
}

// tokenizerJSON is a tokenizers file over testVocab plus MPNet's <s> and
// </s>, with the given post_processor.
func tokenizerJSON(post string) []byte {
	var vocab []string
	for i, tok := range append(strings.Split(strings.TrimSuffix(testVocab, "\n"), "\n"), "<s>", "</s>") {
		vocab = append(vocab, fmt.Sprintf("%q: %d", tok, i))
	}
	return []byte(`{"normalizer": {"type": "BertNormalizer", "lowercase": true}, "pre_tokenizer": {"type": "BertPreTokenizer"},
		"post_processor": ` + post + `, "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
		"max_input_chars_per_word": 100, "vocab": {` + strings.Join(vocab, ", ") + `}}}`)
}

// The post-processor decides the tokens around each text: BERT's [CLS] …
// [SEP] through a template, MPNet's <s> … </s> through RobertaProcessing;
// one that would add anything else is refused.
func TestPostProcessorBoundaries(t *testing.T) {
	cases := []struct {
		name, post string
		want       []int64 // "my card" encoded
		err        string
	}{
		{"none", `null`, []int64{2, 4, 5, 3}, ""},
		{"template", `{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "[CLS]"}}, {"Sequence": {"id": "A"}},
			{"SpecialToken": {"id": "[SEP]"}}], "special_tokens": {"[CLS]": {"tokens": ["[CLS]"]}, "[SEP]": {"tokens": ["[SEP]"]}}}`,
			[]int64{2, 4, 5, 3}, ""},
		{"roberta", `{"type": "RobertaProcessing", "sep": ["</s>", 25], "cls": ["<s>", 24]}`, []int64{24, 4, 5, 25}, ""},
		{"bert", `{"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}`, []int64{2, 4, 5, 3}, ""},
		{"template adding more", `{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "[CLS]"}}, {"Sequence": {"id": "A"}}]}`,
			nil, "single template"},
		{"unknown", `{"type": "ByteLevel"}`, nil, `"ByteLevel"`},
		{"token not in vocab", `{"type": "RobertaProcessing", "sep": ["</x>", 2], "cls": ["<s>", 0]}`, nil, "no <s> or no </x>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := ParseTokenizerJSON(tokenizerJSON(c.post))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one mentioning %s", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ids, _, err := w.EncodeIDs("My card", 0)
			if err != nil || !slices.Equal(ids, c.want) {
				t.Errorf("EncodeIDs = %v, %v; want %v", ids, err, c.want)
			}
			// The same tokens come back from the options, which manifests record.
			again, err := ReadVocab(strings.NewReader(testVocab+"<s>\n</s>\n"), w.Options())
			if err != nil {
				t.Fatal(err)
			}
			if ids2, _, _ := again.EncodeIDs("My card", 0); !slices.Equal(ids2, c.want) {
				t.Errorf("from vocab.txt with the options: %v, want %v", ids2, c.want)
			}
		})
	}
}
