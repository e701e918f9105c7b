package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/triage-ml/triage/encoder"
	"github.com/triage-ml/triage/encoderdir"
	"github.com/triage-ml/triage/finetune"
	"github.com/triage-ml/triage/trainer"
)

// fineTuneFlags configure fine-tuning (train --fine-tune, and the trainer
// role's jobs and retraining runs that ask for it).
type fineTuneFlags struct {
	on         bool
	checkpoint string
	o          finetune.Options
}

func (f *fineTuneFlags) register(fs *flag.FlagSet, withSwitch bool) {
	if withSwitch {
		fs.BoolVar(&f.on, "fine-tune", false, "fine-tune the BERT checkpoint of --encoder (or --checkpoint) with PyTorch instead of training a head on frozen features; the bundle serves through ONNX Runtime like any other")
	}
	fs.StringVar(&f.checkpoint, "checkpoint", "", "BERT or MPNet checkpoint folder to fine-tune (config.json, model.safetensors, tokenizer files); default: the checkpoint --encoder was converted from")
	fs.StringVar(&f.o.Python, "python", finetune.DefaultPython, "Python with PyTorch and transformers for fine-tuning (scripts/finetune-env.sh makes it) (env TRIAGE_PYTHON)")
	fs.StringVar(&f.o.Script, "fine-tune-script", finetune.DefaultScript, "the fine-tuning script")
	fs.IntVar(&f.o.Epochs, "fine-tune-epochs", finetune.DefaultEpochs, "most fine-tuning epochs (early stopping on the validation split)")
	fs.Float64Var(&f.o.LearningRate, "fine-tune-lr", finetune.DefaultLR, "AdamW peak learning rate (linear warm-up over 10% of steps, then linear decay)")
	fs.IntVar(&f.o.BatchSize, "fine-tune-batch", finetune.DefaultBatch, "texts per step and process")
	fs.IntVar(&f.o.Patience, "fine-tune-patience", 2, "stop after this many epochs without validation gain")
	fs.IntVar(&f.o.MaxLength, "fine-tune-max-length", 0, "tokens per text (0 = the 99th percentile of the training texts' lengths)")
	fs.IntVar(&f.o.MaxSteps, "fine-tune-max-steps", 0, "stop after this many optimiser steps (0 = no cap; for smoke tests)")
	fs.StringVar(&f.o.Device, "device", finetune.DeviceCPU, `fine-tuning device: "cpu" or "cuda" (mixed precision; an error when PyTorch sees no GPU)`)
	fs.IntVar(&f.o.Procs, "nproc", 1, "data-parallel fine-tuning processes (torchrun, DDP: gloo on CPU, one GPU each with --device cuda)")
	fs.IntVar(&f.o.Threads, "fine-tune-threads", 0, "torch threads per process (0 = CPUs / --nproc)")
}

// build resolves the checkpoint and returns the trainer's fine-tuning
// options; variant is --encoder-variant, the served encoder file.
func (f *fineTuneFlags) build(encoderDir, variant string, open func(dir, variant string) (trainer.Embedder, func(), error)) (*trainer.FineTune, error) {
	ckpt, maxLen := f.checkpoint, 0
	if ckpt == "" {
		if encoderDir == "" {
			return nil, errors.New("--fine-tune needs --encoder DIR (made by `make encoder`) or --checkpoint DIR (a BERT checkpoint)")
		}
		m, err := encoderdir.Read(encoderDir)
		if err != nil {
			return nil, fmt.Errorf("--fine-tune: %w", err)
		}
		if _, err := os.Stat(m.Source); err != nil {
			return nil, fmt.Errorf("--fine-tune: encoder %q was converted from %q, which is not here (%w): give --checkpoint DIR", encoderDir, m.Source, err)
		}
		ckpt, maxLen = m.Source, m.MaxLength
	}
	pooling, stMax, err := encoder.CheckpointDefaults(ckpt)
	if err != nil {
		return nil, fmt.Errorf("--fine-tune: %w", err)
	}
	o := f.o
	o.Checkpoint, o.Pooling, o.Variant = ckpt, pooling, variant
	o.ModelMaxLength = max(maxLen, stMax)
	ft := &trainer.FineTune{Options: o, OpenEncoder: open}
	if err := ft.Options.Validate(); err != nil {
		return nil, err
	}
	return ft, nil
}

// opener opens converted encoders for a fine-tuning run's scoring.
func (rt *runtimeFlags) encoderOpener() func(dir, variant string) (trainer.Embedder, func(), error) {
	r := *rt // openForTraining adjusts sessions and top-k: not the caller's serving options
	return func(dir, variant string) (trainer.Embedder, func(), error) {
		ef := encoderFlags{dir: dir, variant: variant}
		src, closeEnc, err := ef.openForTraining(&r)
		if err != nil {
			return nil, nil, err
		}
		return src.Embedder, closeEnc, nil
	}
}
