package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/encoder"
	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/inference"
)

func encoderCommand(stdin io.Reader, stdout, stderr io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:        "encoder",
		ShortUsage:  "triage encoder convert|embed [flags]",
		ShortHelp:   "convert a BERT or MPNet checkpoint to an ONNX sentence encoder, or embed texts with one",
		Subcommands: []*ffcli.Command{encoderConvertCommand(stdout, stderr), encoderEmbedCommand(stdin, stdout, stderr)},
		Exec: func(context.Context, []string) error {
			return errors.New("encoder: use `triage encoder convert` or `triage encoder embed`")
		},
	}
}

func encoderConvertCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage encoder convert", flag.ContinueOnError)
	var g globals
	g.register(fs)
	src := fs.String("checkpoint", "", "BERT or MPNet checkpoint folder: config.json, model.safetensors, vocab.txt or tokenizer.json (required)")
	out := fs.String("out", "", "encoder folder to write (required; replaced if it exists)")
	maxLen := fs.Int("max-length", 0, "tokens per text incl. [CLS]/[SEP] (0 = the checkpoint's max_seq_length)")
	pooling := fs.String("pooling", "", `"mean" or "cls" (default: the checkpoint's sentence-transformers pooling, else mean)`)
	return &ffcli.Command{
		Name:       "convert",
		ShortUsage: "triage encoder convert --checkpoint DIR --out DIR",
		ShortHelp:  "write encoder.onnx (embeddings, transformer layers, pooling, L2 norm) from safetensors weights",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			if *src == "" || *out == "" {
				return errors.New("encoder convert: --checkpoint and --out are required")
			}
			log, err := g.logger(stderr)
			if err != nil {
				return err
			}
			m, err := encoder.Convert(*src, *out, encoder.ConvertOptions{MaxLength: *maxLen, Pooling: *pooling})
			if err != nil {
				return err
			}
			log.Info("encoder written", "dir", *out, "layers", m.Layers, "hidden", m.HiddenSize, "max_length", m.MaxLength, "pooling", m.Pooling)
			return json.NewEncoder(stdout).Encode(map[string]any{"encoder": *out, "manifest": m})
		},
	}
}

func encoderEmbedCommand(stdin io.Reader, stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage encoder embed", flag.ContinueOnError)
	var g globals
	g.register(fs)
	var rt runtimeFlags
	fs.StringVar(&rt.ortLib, "ort-lib", "", "path to libonnxruntime.so (default: $ONNXRUNTIME_LIB, then .cache/onnxruntime)")
	rt.registerEncoder(fs)
	dir := fs.String("encoder", "", "converted encoder folder (required)")
	variant := fs.String("variant", encoderdir.VariantFP32, `"fp32" or "int8"`)
	return &ffcli.Command{
		Name:       "embed",
		ShortUsage: "triage encoder embed --encoder DIR < texts.txt",
		ShortHelp:  `one JSON line {"embedding": [...]} per stdin line`,
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			if *dir == "" {
				return errors.New("encoder embed: --encoder DIR is required")
			}
			if _, err := g.logger(stderr); err != nil {
				return err
			}
			rt.sessions, rt.topK = 1, 1
			opts, err := rt.options()
			if err != nil {
				return err
			}
			enc, err := inference.OpenEncoderDir(*dir, *variant, opts)
			if err != nil {
				return err
			}
			defer enc.Close()
			var texts []string
			sc := bufio.NewScanner(stdin)
			sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
			for sc.Scan() {
				texts = append(texts, sc.Text())
			}
			if err := sc.Err(); err != nil {
				return fmt.Errorf("encoder embed: read stdin: %w", err)
			}
			emb, err := enc.EmbedTexts(ctx, texts)
			if err != nil {
				return err
			}
			w := bufio.NewWriter(stdout)
			defer w.Flush()
			enc2 := json.NewEncoder(w)
			D := enc.Dim()
			for i := range texts {
				if err := enc2.Encode(map[string][]float32{"embedding": emb[i*D : (i+1)*D]}); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
