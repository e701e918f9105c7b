package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/tokenizer"
)

func tokenizeCommand(stdin io.Reader, stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage tokenize", flag.ContinueOnError)
	var g globals
	g.register(fs)
	dir := fs.String("tokenizer", "", "folder with tokenizer.json, or vocab.txt (and optionally tokenizer_config.json) (required)")
	maxLen := fs.Int("max-length", 0, "truncate to this many ids including [CLS] and [SEP] (0 = no limit)")
	return &ffcli.Command{
		Name:       "tokenize",
		ShortUsage: "triage tokenize --tokenizer DIR < texts.txt",
		ShortHelp:  `BERT WordPiece ids for each stdin line, one JSON line {"ids": [...]} per text`,
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(ctx context.Context, _ []string) error {
			if *dir == "" {
				return errors.New("tokenize: --tokenizer DIR is required")
			}
			w, err := tokenizer.LoadDir(*dir)
			if err != nil {
				return err
			}
			sc := bufio.NewScanner(stdin)
			sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
			out := bufio.NewWriter(stdout)
			defer out.Flush()
			enc := json.NewEncoder(out)
			for sc.Scan() {
				e, err := w.Encode(sc.Text(), *maxLen, 0)
				if err != nil {
					return err
				}
				if err := enc.Encode(struct {
					IDs []int64 `json:"ids"`
				}{e.IDs}); err != nil {
					return err
				}
			}
			return sc.Err()
		},
	}
}
