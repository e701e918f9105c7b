package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/trainer"
)

func trainCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage train", flag.ContinueOnError)
	var g globals
	g.register(fs)
	var opts trainer.Options
	fc := featurizer.DefaultConfig()
	fs.StringVar(&opts.DataPath, "data", "", "training data: .csv, .tsv or .jsonl file (required)")
	fs.StringVar(&opts.TextColumn, "text-column", "text", "column (CSV header or JSON key) holding the text")
	fs.StringVar(&opts.LabelColumn, "label-column", "label", "column holding the label")
	fs.StringVar(&opts.OutDir, "out", "", "model bundle directory to write (required; replaced if it exists)")
	fs.StringVar(&opts.Name, "name", "", "model name (default: base name of --out)")
	fs.StringVar(&opts.Version, "model-version", "", "model version (default: UTC timestamp)")
	fs.Uint64Var(&opts.Seed, "seed", 42, "seed for the validation split and the optimiser")
	fs.Float64Var(&opts.ValFraction, "val-fraction", 0.1, "share of each label held out for validation")
	fs.IntVar(&opts.MaxEpochs, "max-epochs", 20, "most epochs per trial")
	fs.IntVar(&opts.Patience, "patience", 3, "stop a trial after this many epochs without validation gain")
	fs.IntVar(&opts.Workers, "workers", 0, "trials trained in parallel (0 = number of CPUs)")
	abstain := abstainFlag(fs)
	losses := fs.String("loss", "logistic", "losses to search, comma-separated: logistic, hinge")
	lrs := fs.String("learning-rates", "0.1,0.2", "AdaGrad learning rates to search, comma-separated")
	l2s := fs.String("l2", "0,1e-5", "L2 strengths to search, comma-separated")
	fs.IntVar(&fc.WordNgramMax, "word-ngrams", fc.WordNgramMax, "longest word n-gram")
	fs.IntVar(&fc.CharNgramMin, "char-ngram-min", fc.CharNgramMin, "shortest character n-gram (0 disables)")
	fs.IntVar(&fc.CharNgramMax, "char-ngram-max", fc.CharNgramMax, "longest character n-gram (0 disables)")
	fs.IntVar(&fc.HashBits, "hash-bits", fc.HashBits, "hashed feature space is 2^N buckets")
	fs.IntVar(&fc.MinDF, "min-df", fc.MinDF, "drop features seen in fewer training texts")
	fs.IntVar(&fc.MaxRunes, "max-runes", fc.MaxRunes, "featurisation window: longer texts are truncated and flagged")
	fs.Float64Var(&fc.WordShare, "word-share", fc.WordShare, "share of the vector norm given to word n-grams")
	fs.StringVar(&fc.Stem, "stem", fc.Stem, `stem word n-grams: "english" or "" (none)`)
	var rt runtimeFlags
	fs.StringVar(&rt.ortLib, "ort-lib", "", "path to libonnxruntime.so, for --encoder (default: $ONNXRUNTIME_LIB, then .cache/onnxruntime)")
	rt.registerEncoder(fs)
	var ef encoderFlags
	ef.register(fs, "converted sentence encoder folder (`make encoder`); its embedding becomes head features",
		"encoder file to train with and ship")
	features := fs.String("features", "", `head inputs, comma-separated: "ngram", "encoder" (default: ngram, plus encoder when --encoder is set)`)
	scales := fs.String("encoder-scales", "1,3", "embedding multipliers to search, comma-separated")
	var ftf fineTuneFlags
	ftf.register(fs, true)
	var df distillFlags
	df.register(fs)
	return &ffcli.Command{
		Name:       "train",
		ShortUsage: "triage train --data FILE --text-column NAME --label-column NAME --out DIR [--seed N]",
		ShortHelp:  "train a classifier head (n-grams, sentence encoder, or both) and write a model bundle",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("train: unexpected arguments %q (flags go before them?)", args)
			}
			log, err := g.logger(stderr)
			if err != nil {
				return err
			}
			opts.Logger = log
			opts.Featurizer = fc
			opts.AbstainPrecision = abstainOption(*abstain)
			opts.Losses = splitList(*losses)
			if opts.LearningRates, err = parseFloats("--learning-rates", *lrs); err != nil {
				return err
			}
			if opts.L2s, err = parseFloats("--l2", *l2s); err != nil {
				return err
			}
			if stray := strayFineTuneFlags(fs, ftf.on); stray != nil {
				return stray
			}
			if err := df.stray(fs); err != nil {
				return err
			}
			if ftf.on && df.from != "" {
				return fmt.Errorf("train: --fine-tune and --distill-from: fine-tune a teacher first, then distil from its bundle")
			}
			if ftf.on {
				if opts.FineTune, err = ftf.build(ef.dir, ef.variant, rt.encoderOpener()); err != nil {
					return err
				}
				opts.Features = splitList(*features)
				return runTrain(ctx, opts, stdout)
			}
			if ef.dir == "" {
				if err := strayFlags(fs, "--encoder DIR", "encoder-variant", "encoder-scales"); err != nil {
					return fmt.Errorf("train: %w", err)
				}
			}
			opts.Features = splitList(*features)
			if opts.EncoderScales, err = parseFloats("--encoder-scales", *scales); err != nil {
				return err
			}
			src, closeEnc, err := ef.openForTraining(&rt)
			if err != nil {
				return err
			}
			defer closeEnc()
			opts.Encoder = src
			d, closeTeacher, err := df.open(&rt)
			if err != nil {
				return err
			}
			defer closeTeacher()
			opts.Distill = d
			return runTrain(ctx, opts, stdout)
		},
	}
}

// runTrain trains and prints the bundle's summary as one JSON object.
func runTrain(ctx context.Context, opts trainer.Options, stdout io.Writer) error {
	res, err := trainer.Train(ctx, opts)
	if err != nil {
		return err
	}
	m := res.Manifest
	return json.NewEncoder(stdout).Encode(map[string]any{
		"bundle": res.Dir, "name": m.Name, "version": m.Version, "labels": len(m.Labels),
		"validation":     map[string]any{"accuracy": m.Metrics.Validation.Accuracy, "macro_f1": m.Metrics.Validation.MacroF1, "n": m.Metrics.Validation.N},
		"train_accuracy": m.Metrics.TrainAcc, "hyper_params": m.HyperParams, "seconds": m.Training.Seconds,
	})
}

// strayFineTuneFlags refuses fine-tuning flags given without --fine-tune,
// which would otherwise be silently ignored.
func strayFineTuneFlags(fs *flag.FlagSet, on bool) error {
	if on {
		return nil
	}
	return strayFlags(fs, "--fine-tune", "checkpoint", "python", "fine-tune-script", "fine-tune-epochs", "fine-tune-lr",
		"fine-tune-batch", "fine-tune-patience", "fine-tune-max-length", "fine-tune-max-steps", "device", "nproc", "fine-tune-threads")
}

// strayFlags refuses any of names set on the command line when the flag
// they depend on (needs) is not: they would be silently ignored.
func strayFlags(fs *flag.FlagSet, needs string, names ...string) error {
	var stray []string
	fs.Visit(func(f *flag.Flag) {
		if slices.Contains(names, f.Name) {
			stray = append(stray, "--"+f.Name)
		}
	})
	if len(stray) > 0 {
		return fmt.Errorf("%s apply only with %s", strings.Join(stray, ", "), needs)
	}
	return nil
}

// abstainFlag is --abstain-precision, shared by train and tune.
func abstainFlag(fs *flag.FlagSet) *float64 {
	return fs.Float64("abstain-precision", trainer.DefaultAbstainPrecision,
		"precision the accepted validation predictions must reach at the bundle's abstention threshold; predictions under it are flagged abstained (0 disables)")
}

// abstainOption maps the flag to trainer options, where 0 means the default
// and a negative value disables.
func abstainOption(v float64) float64 {
	if v == 0 {
		return -1
	}
	return v
}

// encoderFlags are --encoder and --encoder-variant: the sentence encoder
// heads are trained on (train, and the training jobs of gateway and dev).
type encoderFlags struct{ dir, variant string }

func (f *encoderFlags) register(fs *flag.FlagSet, dirHelp, variantHelp string) {
	fs.StringVar(&f.dir, "encoder", "", dirHelp)
	fs.StringVar(&f.variant, "encoder-variant", "fp32", variantHelp+`: "fp32" or "int8"`)
}

// open opens the encoder for training heads on it; with no --encoder it
// returns nil and a no-op close.
func (f *encoderFlags) open(opts inference.ModelOptions) (*trainer.EncoderSource, func(), error) {
	if f.dir == "" {
		return nil, func() {}, nil
	}
	enc, err := inference.OpenEncoderDir(f.dir, f.variant, opts)
	if err != nil {
		return nil, nil, err
	}
	return &trainer.EncoderSource{Embedder: enc, Dir: f.dir, Variant: f.variant, Manifest: enc.Manifest()}, func() { enc.Close() }, nil
}

func parseFloats(flagName, s string) ([]float64, error) {
	var out []float64
	for _, p := range splitList(s) {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a number", flagName, p)
		}
		out = append(out, f)
	}
	return out, nil
}

// openForTraining opens the --encoder for a training run (nil without one):
// one session and no top-k, since training only embeds texts.
func (f *encoderFlags) openForTraining(rt *runtimeFlags) (*trainer.EncoderSource, func(), error) {
	if f.dir == "" {
		return nil, func() {}, nil
	}
	rt.sessions, rt.topK = 1, 1
	mo, err := rt.options()
	if err != nil {
		return nil, nil, err
	}
	return f.open(mo)
}
