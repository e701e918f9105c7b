package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
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

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/internal/dataset"
)

// benchEncoderCommand compares Triage's encoder path (Go WordPiece, length
// bucketing, ORT) with the Python a user would write (HF tokenizers +
// onnxruntime, pad to the longest text of each batch), on the same ONNX
// file, texts, batches and thread count, in one run.
func benchEncoderCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage bench encoder", flag.ContinueOnError)
	var g globals
	g.register(fs)
	ortLib := fs.String("ort-lib", "", "path to libonnxruntime.so (default: $ONNXRUNTIME_LIB, then .cache/onnxruntime)")
	dir := fs.String("encoder", ".cache/encoders/all-MiniLM-L6-v2", "converted encoder folder (`make encoder`)")
	data := fs.String("data", "", "files whose texts are embedded, comma-separated; mixed and shuffled with a fixed seed (required)")
	textCol := fs.String("text-column", "text", "column holding the text")
	batches := fs.String("batches", "1,32,128", "batch sizes, comma-separated")
	dur := fs.Duration("duration", 5*time.Second, "measuring time per batch size and engine")
	threads := fs.Int("threads", 2, "ONNX Runtime intra-op threads, for both engines")
	python := fs.String("python", "python3", "Python with tokenizers and onnxruntime, for the baseline (\"\" skips it)")
	variants := fs.String("variants", "fp32,int8", "encoder variants to measure with Triage; the baseline runs the first")
	return &ffcli.Command{
		Name:       "encoder",
		ShortUsage: "triage bench encoder --data A.csv,B.csv [--batches 1,32,128] [--threads 2]",
		ShortHelp:  "sentence-encoder texts/s: Triage vs a Python tokenizers+onnxruntime baseline, and int8 vs fp32",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			if *data == "" {
				return errors.New("bench encoder: --data is required")
			}
			if _, err := g.logger(stderr); err != nil {
				return err
			}
			sizes, err := parseBatchSizes(*batches)
			if err != nil {
				return err
			}
			vars := splitList(*variants)
			if len(vars) == 0 {
				return errors.New("--variants: name at least one of fp32, int8")
			}
			var texts []string
			for _, path := range splitList(*data) {
				ds, err := dataset.Load(path, dataset.Options{TextColumn: *textCol, LabelOptional: true})
				if err != nil {
					return err
				}
				for _, e := range ds.Examples {
					texts = append(texts, e.Text)
				}
			}
			rand.New(rand.NewPCG(42, 42)).Shuffle(len(texts), func(i, j int) { texts[i], texts[j] = texts[j], texts[i] })
			man, err := encoderdir.Read(*dir)
			if err != nil {
				return err
			}

			fmt.Fprintf(stdout, "encoder %s (%d layers, dim %d, max %d tokens), %d texts from %s mixed, GOMAXPROCS=%d, ORT intra-op threads=%d, %v per cell\n\n",
				*dir, man.Layers, man.HiddenSize, man.MaxLength, len(texts), *data, runtime.GOMAXPROCS(0), *threads, *dur)
			rates := map[string]map[int]float64{}
			for _, v := range vars {
				rates[v] = map[int]float64{}
				enc, err := inference.OpenEncoderDir(*dir, v, inference.ModelOptions{ORTLib: *ortLib, EncoderThreads: *threads})
				if err != nil {
					return err
				}
				for _, bs := range sizes {
					r, err := measure(ctx, texts, bs, *dur, func(ts []string) error { _, err := enc.EmbedTexts(ctx, ts); return err })
					if err != nil {
						enc.Close()
						return fmt.Errorf("bench encoder %s batch %d: %w", v, bs, err)
					}
					rates[v][bs] = r.rate
				}
				enc.Close()
			}
			var base map[int]float64
			pyVersion := ""
			if *python != "" {
				file, err := encoderdir.VariantFile(vars[0])
				if err != nil {
					return err
				}
				base, pyVersion, err = pythonBaseline(ctx, *python, filepath.Join(*dir, file), *dir, texts, *batches, *dur, *threads, man.MaxLength, stderr)
				if err != nil {
					return err
				}
			}
			fmt.Fprintf(stdout, "| batch | Python %s texts/s | Triage %s texts/s | Triage/Python |", pyVersion, vars[0])
			for _, v := range vars[1:] {
				fmt.Fprintf(stdout, " Triage %s texts/s | %s/%s |", v, v, vars[0])
			}
			fmt.Fprintln(stdout)
			fmt.Fprint(stdout, "|---:|---:|---:|---:|")
			for range vars[1:] {
				fmt.Fprint(stdout, "---:|---:|")
			}
			fmt.Fprintln(stdout)
			for _, bs := range sizes {
				r0 := rates[vars[0]][bs]
				py, ratio := "-", "-"
				if base != nil {
					py, ratio = fmt.Sprintf("%.1f", base[bs]), fmt.Sprintf("%.2f", r0/base[bs])
				}
				fmt.Fprintf(stdout, "| %d | %s | %.1f | %s |", bs, py, r0, ratio)
				for _, v := range vars[1:] {
					fmt.Fprintf(stdout, " %.1f | %.2f |", rates[v][bs], rates[v][bs]/r0)
				}
				fmt.Fprintln(stdout)
			}
			return nil
		},
	}
}

// pythonBaseline runs scripts/bench/encoder_baseline.py on the same texts
// (written to a temporary CSV, in the same order) and returns texts/s by
// batch size.
func pythonBaseline(ctx context.Context, python, model, tokDir string, texts []string, batches string, dur time.Duration,
	threads, maxLen int, stderr io.Writer) (map[int]float64, string, error) {
	tmp, err := os.CreateTemp("", "triage-bench-*.csv")
	if err != nil {
		return nil, "", err
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
	script, err := filepath.Abs(filepath.Join("scripts", "bench", "encoder_baseline.py"))
	if err != nil {
		return nil, "", err
	}
	cmd := exec.CommandContext(ctx, python, script, "--model", model, "--tokenizer", tokDir, "--data", tmp.Name(),
		"--batch", batches, "--duration", strconv.FormatFloat(dur.Seconds(), 'f', -1, 64),
		"--threads", strconv.Itoa(threads), "--max-length", strconv.Itoa(maxLen), "--json")
	cmd.Stderr = stderr
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
	return rates, "(ORT " + res.ORT + ")", nil
}
