package tokenizer

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// LoadDir loads a checkpoint's tokenizer from dir: tokenizer.json (the
// Hugging Face tokenizers format) when present, else vocab.txt with the
// casing options of tokenizer_config.json (uncased when absent).
func LoadDir(dir string) (*WordPiece, error) {
	path := filepath.Join(dir, "tokenizer.json")
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		w, err := ParseTokenizerJSON(raw)
		if err != nil {
			return nil, fmt.Errorf("load tokenizer %q: %w", path, err)
		}
		return w, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	opts, err := configOptions(dir)
	if err != nil {
		return nil, err
	}
	return LoadVocab(filepath.Join(dir, "vocab.txt"), opts)
}

// configOptions reads do_lower_case / strip_accents from tokenizer_config.json.
func configOptions(dir string) (Options, error) {
	opts := Options{Lowercase: true}
	path := filepath.Join(dir, "tokenizer_config.json")
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return opts, nil
	}
	if err != nil {
		return opts, fmt.Errorf("load tokenizer: %w", err)
	}
	var cfg struct {
		DoLowerCase  *bool `json:"do_lower_case"`
		StripAccents *bool `json:"strip_accents"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return opts, fmt.Errorf("load tokenizer %q: %w", path, err)
	}
	if cfg.DoLowerCase != nil {
		opts.Lowercase = *cfg.DoLowerCase
	}
	opts.StripAccents = cfg.StripAccents
	return opts, nil
}

// ParseTokenizerJSON reads a tokenizers-format file whose model is WordPiece
// with a BertNormalizer (or none); other pipelines are refused rather than
// silently tokenised differently.
func ParseTokenizerJSON(raw []byte) (*WordPiece, error) {
	var tj struct {
		Normalizer *struct {
			Type               string `json:"type"`
			CleanText          *bool  `json:"clean_text"`
			HandleChineseChars *bool  `json:"handle_chinese_chars"`
			Lowercase          *bool  `json:"lowercase"`
			StripAccents       *bool  `json:"strip_accents"`
		} `json:"normalizer"`
		PreTokenizer *struct {
			Type string `json:"type"`
		} `json:"pre_tokenizer"`
		PostProcessor *postProcessor `json:"post_processor"`
		Model         struct {
			Type                    string           `json:"type"`
			UnkToken                string           `json:"unk_token"`
			ContinuingSubwordPrefix string           `json:"continuing_subword_prefix"`
			MaxInputCharsPerWord    int              `json:"max_input_chars_per_word"`
			Vocab                   map[string]int32 `json:"vocab"`
		} `json:"model"`
	}
	if err := json.Unmarshal(raw, &tj); err != nil {
		return nil, err
	}
	if tj.Model.Type != "WordPiece" {
		return nil, fmt.Errorf("model type %q: only WordPiece tokenizers are supported", tj.Model.Type)
	}
	if tj.PreTokenizer != nil && tj.PreTokenizer.Type != "BertPreTokenizer" {
		return nil, fmt.Errorf("pre_tokenizer %q: only BertPreTokenizer is supported", tj.PreTokenizer.Type)
	}
	opts := Options{
		UnknownToken:          tj.Model.UnkToken,
		ContinuingSubwordMark: tj.Model.ContinuingSubwordPrefix,
		MaxInputCharsPerWord:  tj.Model.MaxInputCharsPerWord,
	}
	if pp := tj.PostProcessor; pp != nil {
		var err error
		if opts.ClsToken, opts.SepToken, err = pp.boundaries(); err != nil {
			return nil, err
		}
	}
	if n := tj.Normalizer; n != nil {
		if n.Type != "BertNormalizer" {
			return nil, fmt.Errorf("normalizer %q: only BertNormalizer is supported", n.Type)
		}
		if (n.CleanText != nil && !*n.CleanText) || (n.HandleChineseChars != nil && !*n.HandleChineseChars) {
			return nil, errors.New("BertNormalizer with clean_text or handle_chinese_chars off is not supported")
		}
		opts.Lowercase = n.Lowercase == nil || *n.Lowercase
		opts.StripAccents = n.StripAccents
	}
	// Rebuild the vocab.txt order (id = line) so both sources share one reader.
	lines := make([]string, len(tj.Model.Vocab))
	for tok, id := range tj.Model.Vocab {
		if id < 0 || int(id) >= len(lines) || lines[id] != "" {
			return nil, fmt.Errorf("vocab ids are not a permutation of 0..%d (token %q has id %d)", len(lines)-1, tok, id)
		}
		if strings.ContainsAny(tok, "\n") {
			return nil, fmt.Errorf("vocab token %q contains a newline", tok)
		}
		lines[id] = tok
	}
	return ReadVocab(strings.NewReader(strings.Join(lines, "\n")), opts)
}

// Options returns the settings the tokenizer was loaded with.
func (w *WordPiece) Options() Options { return w.opts }

// WriteVocab writes the vocabulary as vocab.txt: one token per line, the
// line number being the id, so ReadVocab gives back the same ids.
func (w *WordPiece) WriteVocab(out io.Writer) error {
	bw := bufio.NewWriter(out)
	for _, t := range w.tokens {
		if _, err := bw.WriteString(t + "\n"); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// postProcessor is the part of tokenizers' post_processor that says which
// tokens open and close a single text.
type postProcessor struct {
	Type string `json:"type"`
	// BertProcessing and RobertaProcessing: [token, id] pairs.
	Cls []any `json:"cls"`
	Sep []any `json:"sep"`
	// TemplateProcessing: the single-text template.
	Single []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
		Sequence *struct {
			ID string `json:"id"`
		} `json:"Sequence"`
	} `json:"single"`
	SpecialTokens map[string]struct {
		Tokens []string `json:"tokens"`
	} `json:"special_tokens"`
}

// special is the token a template's special id stands for (itself unless
// special_tokens maps it to one other token).
func (p *postProcessor) special(id string) string {
	if s, ok := p.SpecialTokens[id]; ok && len(s.Tokens) == 1 {
		return s.Tokens[0]
	}
	return id
}

// boundaries returns the opening and closing tokens of a single text; a
// post-processor that adds anything else is refused, since serving adds
// exactly these two.
func (p *postProcessor) boundaries() (cls, sep string, err error) {
	switch p.Type {
	case "BertProcessing", "RobertaProcessing":
		if len(p.Cls) == 2 && len(p.Sep) == 2 {
			c, ok1 := p.Cls[0].(string)
			s, ok2 := p.Sep[0].(string)
			if ok1 && ok2 {
				return c, s, nil
			}
		}
		return "", "", fmt.Errorf("post_processor %s: cls and sep must be [token, id] pairs", p.Type)
	case "TemplateProcessing":
		t := p.Single
		if len(t) == 3 && t[0].SpecialToken != nil && t[1].Sequence != nil && t[2].SpecialToken != nil {
			return p.special(t[0].SpecialToken.ID), p.special(t[2].SpecialToken.ID), nil
		}
		return "", "", errors.New("post_processor TemplateProcessing: only a single template of the form <special> $A <special> is supported")
	default:
		return "", "", fmt.Errorf("post_processor %q: only BertProcessing, RobertaProcessing and TemplateProcessing are supported", p.Type)
	}
}
