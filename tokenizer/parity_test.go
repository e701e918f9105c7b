package tokenizer

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/triage-ml/triage/internal/minilm"
)

// repoRoot finds the module root, where .cache and scripts live.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// adversarial are texts built to hit every branch of the normaliser and
// pre-tokeniser: emoji and modifiers, CJK and other scripts, combining marks,
// control and format characters, odd spaces, over-long words.
func adversarial() []string {
	out := []string{
		"I ❤️ my card 😍😍", "emoji👍🏽 skin tones 👨‍👩‍👧", "我的卡丢了吗？", "日本語のテキスト", "한국어 텍스트",
		"café crème brûlée", "naïve coöperate", "a\u0301\u0302 combining", "Straße İstanbul ΣΑΣ", "ﬁ ligature",
		"Ｆｕｌｌｗｉｄｔｈ ＣＡＲＤ", "¿Dónde está mi tarjeta?", "mixed русский text", "עברית ועוד", "العربية نص",
		"tab\there\u200bzero\u00a0nbsp\u3000ideographic", "control\x07bell\x1bescape", "\u2028line sep\u2029para",
		"numbers 1,234.56 and $%^&*()", "a-b_c/d\\e|f~g`h", strings.Repeat("x", 99), strings.Repeat("x", 100),
		strings.Repeat("y", 101) + " end", strings.Repeat("supercalifragilistic", 6), "\ufeffbom first",
		"private\ue000use", "unassigned\U000E0080tag", "math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "  leading and trailing  ", "",
	}
	// A sweep across the blocks that have been stable since Unicode 6
	// (Latin to Samaritan; kana). Known difference: Hugging Face's Rust tables
	// predate some later additions (e.g. Arabic marks U+08D3..08E1 or the
	// punctuation U+2E50..2E5D added in Unicode 9-14), which Go's Unicode 15
	// tables classify as marks or punctuation, so such code points can split
	// differently.
	for _, block := range [][2]rune{{0x20, 0x800}, {0x3000, 0x3100}} {
		for r := block[0]; r+2 < block[1]; r += 37 {
			out = append(out, fmt.Sprintf("sweep %c%c%c end", r, r+1, r+2))
		}
	}
	return out
}

func sharedTexts(t *testing.T, root string) []string {
	t.Helper()
	dir := os.Getenv("TRIAGE_DATA_DIR")
	if dir == "" {
		dir = filepath.Join(root, "..", "shared", "data")
	}
	var texts []string
	for _, f := range []string{"banking77/train.csv", "movie-reviews/train.csv"} {
		raw, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("parity data: %v (set TRIAGE_DATA_DIR)", err)
		}
		rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, r := range rows[1:] {
			texts = append(texts, r[0])
		}
	}
	return texts
}

// TestParityWithHuggingFace compares ids with Hugging Face `tokenizers` on
// every text of both shared datasets plus the adversarial set. CI installs
// `tokenizers` and fetches the MiniLM tokenizer (scripts/fetch-minilm.sh).
func TestParityWithHuggingFace(t *testing.T) {
	root := repoRoot(t)
	model := minilm.Checkpoint()
	if _, err := os.Stat(filepath.Join(model, "tokenizer.json")); err != nil {
		t.Fatalf("MiniLM tokenizer not found at %s: run scripts/fetch-minilm.sh (make test does)", model)
	}
	if err := exec.Command("python3", "-c", "import tokenizers").Run(); err != nil {
		t.Fatal("python3 cannot import tokenizers: pip install tokenizers (make test does)")
	}
	texts := append(sharedTexts(t, root), adversarial()...)
	for i, s := range texts { // one text per line for the reference script
		texts[i] = strings.NewReplacer("\n", " ", "\r", " ", "\u2028", " ", "\u2029", " ", "\u0085", " ").Replace(s)
	}
	cmd := exec.Command("python3", filepath.Join(root, "scripts", "parity", "hf_tokenize.py"), filepath.Join(model, "tokenizer.json"))
	cmd.Stdin = strings.NewReader(strings.Join(texts, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("reference tokenizer: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("reference returned %d lines for %d texts", len(lines), len(texts))
	}
	// Both sources the tokenizer reads must agree with the reference.
	fromVocab, err := LoadVocab(filepath.Join(model, "vocab.txt"), Options{Lowercase: true})
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, err := LoadDir(model) // reads tokenizer.json
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []struct {
		name string
		w    *WordPiece
	}{{"vocab.txt", fromVocab}, {"tokenizer.json", fromJSON}} {
		t.Run(src.name, func(t *testing.T) { checkParity(t, src.w, texts, lines) })
	}
}

func checkParity(t *testing.T, w *WordPiece, texts, lines []string) {
	mismatches := 0
	for i, text := range texts {
		var want []int64
		if err := json.Unmarshal([]byte(lines[i]), &want); err != nil {
			t.Fatal(err)
		}
		e, err := w.Encode(text, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(e.IDs) != fmt.Sprint(want) {
			mismatches++
			if mismatches <= 5 {
				t.Errorf("%q:\n go %v\n hf %v", text, e.IDs, want)
			}
		}
	}
	t.Logf("parity: %d texts, %d mismatches", len(texts), mismatches)
	if mismatches > 0 {
		t.Errorf("%d of %d texts tokenised differently from Hugging Face tokenizers", mismatches, len(texts))
	}
}
