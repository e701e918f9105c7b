package bench

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/inference"
)

// EncoderBaselineScript is the Python baseline, relative to the repository
// root (the working directory the benchmark is run from).
const EncoderBaselineScript = "scripts/bench/encoder_baseline.py"

// EncoderConfig configures Encoder.
type EncoderConfig struct {
	Dir string // converted encoder folder
	// Variants are measured with Triage in order; the baseline runs the
	// first, and the others are compared with it.
	Variants   []string
	Data       []string // files whose texts are mixed and shuffled with a fixed seed
	TextColumn string
	Batches    []int
	Duration   time.Duration // measuring time per batch size and engine
	Threads    int           // ONNX Runtime intra-op threads, for both engines
	// Rounds repeats every measurement, Triage then Python in turn, and
	// reports medians: on a shared machine, load that drifts between two
	// consecutive cells would otherwise decide the ratio. 0 = 1.
	Rounds int
	ORTLib string
	// Python runs the baseline (with tokenizers and onnxruntime); "" skips it.
	Python string
	// ModelOnly tokenises every text once, before timing, on both sides:
	// the rates are then of the model call (batch packing and ONNX Runtime)
	// alone, so a gap between the two is not in either tokenizer.
	ModelOnly bool
	Stderr    io.Writer // the baseline's stderr

	// OnStart, if set, is called once the texts and manifest are read,
	// before anything is measured.
	OnStart func(EncoderInfo)
}

// EncoderInfo describes what Encoder measures.
type EncoderInfo struct {
	Layers, HiddenSize, MaxLength int
	Texts                         int
	GOMAXPROCS                    int
}

// EncoderRow is one batch size, texts/s.
type EncoderRow struct {
	Batch int
	// Python is the baseline's rate and VsPython the first variant's over
	// it (the median of the per-round ratios, VsPythonMin..Max their
	// range); all 0 without a baseline.
	Python, VsPython         float64
	VsPythonMin, VsPythonMax float64
	// Triage holds one rate per variant, in EncoderResult.Variants order;
	// VsFirst holds each over the first variant's (VsFirst[0] is 1).
	Triage, VsFirst []float64
}

// EncoderResult is everything Encoder measured.
type EncoderResult struct {
	Info      EncoderInfo
	Variants  []string
	Baseline  bool   // the Python baseline ran
	PythonORT string // onnxruntime version the baseline used
	Rows      []EncoderRow
}

// Encoder compares Triage's encoder path (Go WordPiece, length bucketing,
// ORT) with the Python a user would write (HF tokenizers + onnxruntime, pad
// to the longest text of each batch), on the same ONNX file, texts, batches
// and thread count, in one run; and the variants with each other.
func Encoder(ctx context.Context, cfg EncoderConfig) (EncoderResult, error) {
	if len(cfg.Variants) == 0 {
		return EncoderResult{}, errors.New("bench encoder: no encoder variant to measure")
	}
	var texts []string
	for _, path := range cfg.Data {
		ts, err := loadTexts(path, cfg.TextColumn)
		if err != nil {
			return EncoderResult{}, err
		}
		texts = append(texts, ts...)
	}
	// Fixed seed: every run sees the same mix of short and long texts in
	// the same batches.
	rand.New(rand.NewPCG(42, 42)).Shuffle(len(texts), func(i, j int) { texts[i], texts[j] = texts[j], texts[i] })
	man, err := encoderdir.Read(cfg.Dir)
	if err != nil {
		return EncoderResult{}, err
	}
	res := EncoderResult{
		Info: EncoderInfo{Layers: man.Layers, HiddenSize: man.HiddenSize, MaxLength: man.MaxLength,
			Texts: len(texts), GOMAXPROCS: runtime.GOMAXPROCS(0)},
		Variants: cfg.Variants,
	}
	if cfg.OnStart != nil {
		cfg.OnStart(res.Info)
	}

	// rates[v][bs] and base[bs] hold one rate per round.
	rates := map[string]map[int][]float64{}
	for _, v := range cfg.Variants {
		rates[v] = map[int][]float64{}
	}
	base := map[int][]float64{}
	for range max(cfg.Rounds, 1) {
		for _, v := range cfg.Variants {
			enc, err := inference.OpenEncoderDir(cfg.Dir, v, inference.ModelOptions{ORTLib: cfg.ORTLib, EncoderThreads: cfg.Threads})
			if err != nil {
				return res, err
			}
			var tokens [][]int64
			if cfg.ModelOnly {
				tokens = enc.TokenizeAll(texts)
			}
			for _, bs := range cfg.Batches {
				var r Timing
				var err error
				if cfg.ModelOnly {
					r, err = measure(ctx, tokens, bs, cfg.Duration, func(ts [][]int64) error { _, err := enc.Embed(ctx, ts); return err })
				} else {
					r, err = measure(ctx, texts, bs, cfg.Duration, func(ts []string) error { _, err := enc.EmbedTexts(ctx, ts); return err })
				}
				if err != nil {
					enc.Close()
					return res, fmt.Errorf("bench encoder %s batch %d: %w", v, bs, err)
				}
				rates[v][bs] = append(rates[v][bs], r.Rate)
			}
			enc.Close()
		}
		if cfg.Python != "" {
			file, err := encoderdir.VariantFile(cfg.Variants[0])
			if err != nil {
				return res, err
			}
			b, ver, err := pythonBaseline(ctx, cfg, filepath.Join(cfg.Dir, file), texts, man.MaxLength)
			if err != nil {
				return res, err
			}
			for bs, r := range b {
				base[bs] = append(base[bs], r)
			}
			res.Baseline, res.PythonORT = true, ver
		}
	}
	for _, bs := range cfg.Batches {
		first := rates[cfg.Variants[0]][bs]
		r0 := statOf(first).Median
		row := EncoderRow{Batch: bs}
		if res.Baseline {
			ratios := make([]float64, len(first))
			for i := range first {
				ratios[i] = first[i] / base[bs][i]
			}
			st := statOf(ratios)
			row.Python = statOf(base[bs]).Median
			row.VsPython, row.VsPythonMin, row.VsPythonMax = st.Median, st.Min, st.Max
		}
		for _, v := range cfg.Variants {
			r := statOf(rates[v][bs]).Median
			row.Triage = append(row.Triage, r)
			row.VsFirst = append(row.VsFirst, r/r0)
		}
		res.Rows = append(res.Rows, row)
	}
	return res, nil
}

// pythonBaseline runs EncoderBaselineScript on the same texts (written to a
// temporary CSV, in the same order) and returns texts/s by batch size and
// the onnxruntime version it used.
func pythonBaseline(ctx context.Context, cfg EncoderConfig, model string, texts []string, maxLen int) (map[int]float64, string, error) {
	tmp, err := os.CreateTemp("", "triage-bench-*.csv")
	if err != nil {
		return nil, "", fmt.Errorf("bench encoder: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := csv.NewWriter(tmp)
	w.Write([]string{"text"})
	for _, t := range texts {
		w.Write([]string{t})
	}
	w.Flush()
	if err := errors.Join(w.Error(), tmp.Close()); err != nil {
		return nil, "", fmt.Errorf("bench encoder: write texts: %w", err)
	}
	script, err := filepath.Abs(filepath.FromSlash(EncoderBaselineScript))
	if err != nil {
		return nil, "", fmt.Errorf("bench encoder: %w", err)
	}
	batches := make([]string, len(cfg.Batches))
	for i, b := range cfg.Batches {
		batches[i] = strconv.Itoa(b)
	}
	cmd := exec.CommandContext(ctx, cfg.Python, script, "--model", model, "--tokenizer", cfg.Dir, "--data", tmp.Name(),
		"--batch", strings.Join(batches, ","), "--duration", strconv.FormatFloat(cfg.Duration.Seconds(), 'f', -1, 64),
		"--threads", strconv.Itoa(cfg.Threads), "--max-length", strconv.Itoa(maxLen), "--json")
	if cfg.ModelOnly {
		cmd.Args = append(cmd.Args, "--pretokenize")
	}
	cmd.Stderr = cfg.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, "", fmt.Errorf("bench encoder: Python baseline (%s; run from the repository root, with tokenizers and onnxruntime installed): %w", script, err)
	}
	var res struct {
		ORT     string `json:"onnxruntime"`
		Results []struct {
			Batch int     `json:"batch"`
			Rate  float64 `json:"texts_per_sec"`
		} `json:"results"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, "", fmt.Errorf("bench encoder: Python baseline output: %w: %s", err, strings.TrimSpace(string(out)))
	}
	rates := map[int]float64{}
	for _, r := range res.Results {
		rates[r.Batch] = r.Rate
	}
	return rates, res.ORT, nil
}
