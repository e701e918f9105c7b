// Package dataset reads labelled text from CSV or JSON Lines files and carves
// reproducible stratified splits. Every error names the file and line.
package dataset

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Example is one labelled text. Line is its 1-based line in the source file.
type Example struct {
	Text  string
	Label string
	Line  int
}

// Dataset is a loaded file with its content hash, so a model can record
// exactly which data trained it.
type Dataset struct {
	Path     string
	SHA256   string
	Examples []Example
}

// Options selects the columns (CSV header names or JSON keys).
type Options struct {
	TextColumn  string
	LabelColumn string
	// LabelOptional lets rows without a label through (prediction input).
	LabelOptional bool
}

// ErrEmpty is returned for files with no examples.
var ErrEmpty = errors.New("no examples")

// Load reads path as CSV (.csv, .tsv) or JSON Lines (.jsonl, .ndjson, .json).
func Load(path string, opt Options) (*Dataset, error) {
	if opt.TextColumn == "" {
		return nil, errors.New("dataset: text column name is empty")
	}
	if opt.LabelColumn == "" && !opt.LabelOptional {
		return nil, errors.New("dataset: label column name is empty")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read dataset: %w", err)
	}
	sum := sha256.Sum256(raw)
	ds := &Dataset{Path: path, SHA256: hex.EncodeToString(sum[:])}
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".csv":
		ds.Examples, err = readCSV(path, raw, ',', opt)
	case ".tsv":
		ds.Examples, err = readCSV(path, raw, '\t', opt)
	case ".jsonl", ".ndjson", ".json":
		ds.Examples, err = readJSONL(path, raw, opt)
	default:
		return nil, fmt.Errorf("%s: unknown format %q: use .csv, .tsv, .jsonl or .ndjson", path, ext)
	}
	if err != nil {
		return nil, err
	}
	if len(ds.Examples) == 0 {
		return nil, fmt.Errorf("%s: %w", path, ErrEmpty)
	}
	return ds, nil
}

func readCSV(path string, raw []byte, comma rune, opt Options) ([]Example, error) {
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")) // Excel's BOM
	r := csv.NewReader(bytes.NewReader(raw))
	r.Comma = comma
	r.FieldsPerRecord = 0 // header fixes the width; ragged rows are errors
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w (file is empty, expected a header line)", path, ErrEmpty)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	col := func(name string) (int, error) {
		if i := slices.Index(header, name); i >= 0 {
			return i, nil
		}
		return -1, fmt.Errorf("%s:1: no column %q in header (columns: %s)", path, name, strings.Join(header, ", "))
	}
	ti, err := col(opt.TextColumn)
	if err != nil {
		return nil, err
	}
	li := -1
	if opt.LabelColumn != "" {
		if li, err = col(opt.LabelColumn); err != nil && !opt.LabelOptional {
			return nil, err
		}
	}
	var out []Example
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				if errors.Is(pe.Err, csv.ErrFieldCount) {
					return nil, fmt.Errorf("%s:%d: row has %d fields, header has %d", path, pe.StartLine, len(rec), len(header))
				}
				return nil, fmt.Errorf("%s:%d: %w", path, pe.Line, pe.Err)
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		line, _ := r.FieldPos(0) // only valid after a successful Read
		ex := Example{Text: rec[ti], Line: line}
		if li >= 0 {
			ex.Label = strings.TrimSpace(rec[li])
		}
		if err := check(path, ex, opt); err != nil {
			return nil, err
		}
		out = append(out, ex)
	}
	return out, nil
}

func readJSONL(path string, raw []byte, opt Options) ([]Example, error) {
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 0, 64*1024), 64<<20)
	var out []Example
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var obj map[string]any
		if err := json.Unmarshal(b, &obj); err != nil {
			return nil, fmt.Errorf("%s:%d: invalid JSON: %w", path, line, err)
		}
		text, err := field(obj, opt.TextColumn, false)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		ex := Example{Text: text, Line: line}
		if opt.LabelColumn != "" {
			if ex.Label, err = field(obj, opt.LabelColumn, opt.LabelOptional); err != nil {
				return nil, fmt.Errorf("%s:%d: %w", path, line, err)
			}
			ex.Label = strings.TrimSpace(ex.Label)
		}
		if err := check(path, ex, opt); err != nil {
			return nil, err
		}
		out = append(out, ex)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// field reads a string (numbers and booleans are accepted as labels, since
// JSON exporters often write 0/1).
func field(obj map[string]any, name string, optional bool) (string, error) {
	v, ok := obj[name]
	if !ok || v == nil {
		if optional {
			return "", nil
		}
		return "", fmt.Errorf("missing field %q", name)
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case float64, bool:
		return fmt.Sprint(x), nil
	default:
		return "", fmt.Errorf("field %q is %T, want a string", name, v)
	}
}

func check(path string, ex Example, opt Options) error {
	if strings.TrimSpace(ex.Text) == "" {
		return fmt.Errorf("%s:%d: empty text", path, ex.Line)
	}
	if ex.Label == "" && !opt.LabelOptional {
		return fmt.Errorf("%s:%d: empty label", path, ex.Line)
	}
	return nil
}

// Labels returns the sorted distinct labels.
func Labels(exs []Example) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range exs {
		if !seen[e.Label] {
			seen[e.Label] = true
			out = append(out, e.Label)
		}
	}
	slices.Sort(out)
	return out
}

// StratifiedSplit holds out valFraction of each label's examples, chosen by a
// seeded shuffle, so the same seed always gives the same split. Labels with a
// single example stay in training.
func StratifiedSplit(exs []Example, valFraction float64, seed uint64) (train, val []Example, err error) {
	if valFraction <= 0 || valFraction >= 1 {
		return nil, nil, fmt.Errorf("validation fraction %v: must be in (0,1)", valFraction)
	}
	byLabel := map[string][]int{}
	for i, e := range exs {
		byLabel[e.Label] = append(byLabel[e.Label], i)
	}
	rng := rand.New(rand.NewPCG(seed, 0x7472696167650001))
	inVal := make([]bool, len(exs))
	for _, label := range Labels(exs) { // sorted: map order must not affect the split
		idx := byLabel[label]
		rng.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		k := int(float64(len(idx))*valFraction + 0.5)
		if k >= len(idx) {
			k = len(idx) - 1
		}
		for _, i := range idx[:k] {
			inVal[i] = true
		}
	}
	for i, e := range exs {
		if inVal[i] {
			val = append(val, e)
		} else {
			train = append(train, e)
		}
	}
	if len(val) == 0 {
		return nil, nil, fmt.Errorf("validation split is empty: %d examples is too few for fraction %v", len(exs), valFraction)
	}
	return train, val, nil
}

// WriteCSV writes examples as a text,label CSV file, the form every
// command's --data takes with its default columns.
func WriteCSV(path string, exs []Example) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	if err := w.Write([]string{"text", "label"}); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	for _, e := range exs {
		if err := w.Write([]string{e.Text, e.Label}); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	w.Flush()
	if err := errors.Join(w.Error(), f.Close()); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
