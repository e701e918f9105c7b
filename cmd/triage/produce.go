package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/producer"
)

// produceStdin is what `triage produce --stdin` reads; tests replace it.
var produceStdin io.Reader = os.Stdin

func produceCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage produce", flag.ContinueOnError)
	var g globals
	g.register(fs)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka bootstrap addresses, comma-separated")
	topic := fs.String("topic", "triage.support-queries", "input topic to produce to")
	file := fs.String("file", "", "send the rows of this CSV/TSV/JSONL file")
	textCol := fs.String("text-column", "text", "with --file: column (CSV header or JSON key) holding the text")
	idCol := fs.String("id-column", "", `with --file: column holding ids, required on every row ("" = generated ids)`)
	synthetic := fs.Bool("synthetic", false, "send generated support queries or reviews")
	domain := fs.String("synthetic-kind", "auto", "with --synthetic: support, reviews, mixed, or auto (reviews if the topic mentions review)")
	stdin := fs.Bool("stdin", false, "send each non-blank line of stdin as one text")
	text := fs.String("text", "", "send this one text")
	id := fs.String("id", "", "with --text: its id (default generated)")
	idPrefix := fs.String("id-prefix", "", "generated ids are PREFIX-N (default: a prefix unique to this run)")
	source := fs.String("source", "", `"source" field of every input (default: file:NAME, synthetic, stdin or cli)`)
	rateFlag := fs.Float64("rate", 0, "target records per second (0 = unlimited)")
	count := fs.Int("count", 0, "records to send (0 = the whole file or stdin once; synthetic: until interrupted); a file is looped when it has fewer rows")
	seed := fs.Uint64("seed", 1, "seed of --synthetic texts")
	badRatio := fs.Float64("bad-ratio", 0, "fraction (0..1) of records replaced by malformed ones, for dead-letter testing")
	maxInFlight := fs.Int("max-in-flight", 10000, "most records buffered or awaiting acks")
	deliveryTimeout := fs.Duration("delivery-timeout", time.Minute, "fail a record not acknowledged in this long")
	progress := fs.Bool("progress", true, "report progress on stderr every second")
	return &ffcli.Command{
		Name: "produce",
		ShortUsage: "triage produce [--brokers H:P] [--topic T] (--file F [--text-column C] [--id-column C] | --synthetic | --stdin | --text TEXT [--id X])\n" +
			"                [--rate N] [--count N] [--seed N] [--bad-ratio R]",
		ShortHelp: "send texts to an input topic as JSON input records (test traffic, backfills)",
		LongHelp: "Sends schemas.Input JSON records keyed by id with an idempotent producer (acks=all).\n" +
			"Progress goes to stderr, a JSON summary to stdout. Ctrl-C stops sending and flushes what was sent.",
		FlagSet: fs,
		Options: parseOptions(),
		Exec: func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("produce: unexpected arguments %q (quote a --text)", args)
			}
			set := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
			var modes []string
			for _, m := range []string{"file", "synthetic", "stdin", "text"} {
				if set[m] && (m != "synthetic" || *synthetic) && (m != "stdin" || *stdin) {
					modes = append(modes, "--"+m)
				}
			}
			if len(modes) != 1 {
				return fmt.Errorf("produce: give exactly one of --file, --synthetic, --stdin or --text (got %d: %s)", len(modes), strings.Join(modes, " "))
			}
			mode := strings.TrimPrefix(modes[0], "--")
			if set["id"] && mode != "text" {
				return errors.New("produce: --id goes with --text; use --id-column for a file")
			}
			if mode == "text" && set["count"] && *count != 1 {
				return errors.New("produce: --text sends one record; --count does not apply")
			}
			if *idPrefix == "" {
				*idPrefix = fmt.Sprintf("%s-%s", mode, strings.ToLower(fmt.Sprintf("%x", time.Now().UnixMilli())))
			}

			cfg := producer.Config{
				Brokers: splitList(*brokers), Topic: *topic, Rate: *rateFlag, Count: *count, BadRatio: *badRatio,
				IDPrefix: *idPrefix, Source: *source, MaxInFlight: *maxInFlight, DeliveryTimeout: *deliveryTimeout,
			}
			var src producer.Source
			switch mode {
			case "file":
				f, err := producer.FileSource(*file, producer.FileOptions{TextColumn: *textCol, IDColumn: *idCol, Loop: *count > 0})
				if err != nil {
					return fmt.Errorf("produce: %w", err)
				}
				src = f
			case "synthetic":
				d := *domain
				if d == "auto" {
					d = producer.DomainFor(*topic)
				}
				s, err := producer.SyntheticSource(d, *seed)
				if err != nil {
					return fmt.Errorf("produce: --synthetic-kind: %w", err)
				}
				src = s
			case "stdin":
				src = producer.Lines(produceStdin)
			case "text":
				if strings.TrimSpace(*text) == "" {
					return errors.New("produce: --text is empty")
				}
				src = producer.Messages(producer.Message{ID: *id, Text: *text, Source: "cli"})
				cfg.Count = 1
			}

			// --text reports where its record landed.
			var delivered struct {
				ID        string
				Partition *int32
				Offset    *int64
			}
			if mode == "text" {
				cfg.OnDelivery = func(r *kgo.Record, err error) {
					delivered.ID = string(r.Key)
					if err == nil {
						p, o := r.Partition, r.Offset
						delivered.Partition, delivered.Offset = &p, &o
					}
				}
			}
			var pr *progressLine
			if *progress && mode != "text" {
				pr = &progressLine{w: stderr, tty: isTerminal(stderr)}
				cfg.Progress = pr.update
			}

			stats, err := producer.Run(ctx, cfg, src)
			pr.finish()
			interrupted := errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
			if interrupted && stats.Failed == 0 {
				err = nil // Ctrl-C is a normal way to stop; the summary says "interrupted"
			}
			if stats.Topic != "" { // New succeeded: there is a run to report
				out, jerr := json.Marshal(struct {
					producer.Stats
					Mode      string `json:"mode"`
					ID        string `json:"id,omitempty"`
					Partition *int32 `json:"partition,omitempty"`
					Offset    *int64 `json:"offset,omitempty"`
				}{stats, mode, delivered.ID, delivered.Partition, delivered.Offset})
				if jerr != nil {
					return jerr
				}
				if _, werr := fmt.Fprintf(stdout, "%s\n", out); werr != nil && err == nil {
					err = fmt.Errorf("produce: write summary: %w", werr)
				}
			}
			return err // producer errors already say "producer: ..."
		},
	}
}

// progressLine writes producer progress: one "\r"-rewritten line on a
// terminal, one line per update otherwise.
type progressLine struct {
	w       io.Writer
	tty     bool
	written bool
	width   int
}

func (p *progressLine) update(s producer.Stats) {
	line := fmt.Sprintf("produce %s: sent %d, acked %d, failed %d", s.Topic, s.Sent, s.Acked, s.Failed)
	if n := s.MalformedTotal(); n > 0 {
		line += fmt.Sprintf(", malformed %d", n)
	}
	line += fmt.Sprintf(" | %.1f rec/s, %s in %.1fs", s.Rate, humanBytes(s.Bytes), s.Elapsed.Seconds())
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	pad := max(0, p.width-len(line))
	p.width = len(line)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	p.written = true
}

// finish ends a terminal's progress line; safe on a nil *progressLine.
func (p *progressLine) finish() {
	if p != nil && p.tty && p.written {
		fmt.Fprintln(p.w)
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
