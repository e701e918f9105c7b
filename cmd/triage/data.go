package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/internal/dataset"
	"github.com/triage-ml/triage/snapshot"
)

// dataFlags are the flags of the `triage data` subcommands; each registers
// the common ones and only the others it uses.
type dataFlags struct {
	g                       globals
	model, store            string
	asJSON                  bool
	data, textCol, labelCol string
	brokers, feedbackTopic  string
	deadLetterTopic, known  string
	maxTextBytes            int
	timeout                 time.Duration
	limit                   int
}

func (f *dataFlags) register(fs *flag.FlagSet) {
	f.g.register(fs)
	fs.StringVar(&f.model, "model", "", "model name the snapshot is for (required)")
	fs.StringVar(&f.store, "store", "data/snapshots", "snapshot store folder")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON")
}

func (f *dataFlags) registerSnapshot(fs *flag.FlagSet) {
	fs.StringVar(&f.data, "data", "", "base training data: .csv, .tsv or .jsonl file (required)")
	fs.StringVar(&f.textCol, "text-column", "text", "column (CSV header or JSON key) holding the text")
	fs.StringVar(&f.labelCol, "label-column", "label", "column holding the label")
	fs.StringVar(&f.brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap addresses, comma-separated")
	fs.StringVar(&f.feedbackTopic, "feedback-topic", "triage.feedback", `topic of human labels ("" = base data only, no Kafka)`)
	fs.StringVar(&f.deadLetterTopic, "dead-letter-topic", "triage.dead-letters", `where unusable feedback records go ("" = only count them)`)
	fs.StringVar(&f.known, "known-models", "", "comma-separated model names; feedback naming another model is dead-lettered (unknown_model). Empty: no check")
	fs.IntVar(&f.maxTextBytes, "max-text-bytes", snapshot.DefaultMaxTextBytes, "feedback texts longer than this are dead-lettered (text_too_long)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "bound on reading the feedback topic and publishing its rejects")
}

func (f *dataFlags) print(w io.Writer, v any, text func(io.Writer)) error {
	return printResult(w, f.asJSON, v, text)
}

func dataCommand(stdout, stderr io.Writer) *ffcli.Command {
	sub := func(name, usage, help string, nargs int, extra func(*flag.FlagSet, *dataFlags),
		run func(ctx context.Context, f *dataFlags, log *slog.Logger, args []string) error) *ffcli.Command {
		fs := flag.NewFlagSet("triage data "+name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		f := &dataFlags{}
		f.register(fs)
		if extra != nil {
			extra(fs, f)
		}
		return &ffcli.Command{Name: name, ShortUsage: "triage data " + usage, ShortHelp: help, FlagSet: fs, Options: parseOptions(),
			Exec: func(ctx context.Context, args []string) error {
				args, err := interspersed(fs, args)
				if err != nil {
					return err
				}
				if len(args) != nargs {
					return fmt.Errorf("usage: triage data %s", usage)
				}
				if f.model == "" {
					return fmt.Errorf("triage data %s: --model is required", name)
				}
				log, err := f.g.logger(stderr)
				if err != nil {
					return err
				}
				return run(ctx, f, log, args)
			}}
	}
	c := &ffcli.Command{
		Name:       "data",
		ShortUsage: "triage data <snapshot|list|show|diff> --model NAME [flags]",
		ShortHelp:  "labelled training data: immutable snapshots of a model's base data plus human feedback",
		Subcommands: []*ffcli.Command{
			sub("snapshot", "snapshot --model NAME --data FILE [--text-column C] [--label-column C] [--brokers H:P] [--feedback-topic T] [--dead-letter-topic T] [--store DIR] [--json]",
				"merge the base data with the feedback topic's labels into a new snapshot; unusable feedback goes to the dead-letter topic",
				0, func(fs *flag.FlagSet, f *dataFlags) { f.registerSnapshot(fs) }, dataSnapshot(stdout)),
			sub("list", "list --model NAME [--json]", "the model's snapshots, oldest first", 0, nil,
				func(_ context.Context, f *dataFlags, _ *slog.Logger, _ []string) error {
					store, err := snapshot.OpenStore(f.store)
					if err != nil {
						return err
					}
					ms, err := store.List(f.model)
					if err != nil {
						return err
					}
					latest := ""
					if l, err := store.Latest(f.model); err == nil {
						latest = l.Manifest.ID
					}
					return f.print(stdout, ms, func(w io.Writer) {
						fmt.Fprintln(w, "ID\tCREATED\tROWS\tBASE\tFEEDBACK\tLABELS\tPARENT\t")
						for _, m := range ms {
							mark := ""
							if m.ID == latest {
								mark = "latest"
							}
							fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", m.ID, m.CreatedAt.Format(time.DateTime), m.Rows,
								m.OriginCounts[snapshot.OriginBase], m.OriginCounts[snapshot.OriginFeedback], len(m.LabelCounts), orDash(m.Parent), mark)
						}
					})
				}),
			sub("show", "show --model NAME ID [--json]", "one snapshot's manifest, verified against its rows (ID may be a unique prefix)", 1, nil,
				func(_ context.Context, f *dataFlags, _ *slog.Logger, args []string) error {
					store, err := snapshot.OpenStore(f.store)
					if err != nil {
						return err
					}
					snap, err := store.Get(f.model, args[0])
					if err != nil {
						return err
					}
					return printManifest(f, stdout, snap.Manifest)
				}),
			sub("diff", "diff --model NAME A B [--limit N] [--json]", "rows added, removed and relabelled from snapshot A to B, and label count changes", 2,
				func(fs *flag.FlagSet, f *dataFlags) {
					fs.IntVar(&f.limit, "limit", 20, "rows listed per kind of change in the table (0 = all; --json lists all)")
				},
				func(_ context.Context, f *dataFlags, _ *slog.Logger, args []string) error {
					store, err := snapshot.OpenStore(f.store)
					if err != nil {
						return err
					}
					d, err := store.Diff(f.model, args[0], args[1])
					if err != nil {
						return err
					}
					return f.print(stdout, d, func(w io.Writer) { printDiff(w, d, f.limit) })
				}),
		},
	}
	c.Exec = groupExec(&c, "triage data")
	return c
}

// dataSnapshot reads the base file and the feedback topic, dead-letters the
// feedback it cannot use, and writes the snapshot. Rejects are published
// before the snapshot is written, so a failed publish is retried by the
// next run; rejects below the previous snapshot's offsets were published
// by the run that wrote it (at least once, not exactly once).
func dataSnapshot(stdout io.Writer) func(ctx context.Context, f *dataFlags, log *slog.Logger, _ []string) error {
	return func(ctx context.Context, f *dataFlags, log *slog.Logger, _ []string) error {
		if f.data == "" {
			return errors.New("triage data snapshot: --data is required")
		}
		if f.timeout <= 0 {
			return errors.New("triage data snapshot: --timeout must be > 0")
		}
		store, err := snapshot.OpenStore(f.store)
		if err != nil {
			return err
		}
		ds, err := dataset.Load(f.data, dataset.Options{TextColumn: f.textCol, LabelColumn: f.labelCol})
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", f.model, err)
		}
		src := snapshot.Source{Base: &snapshot.BaseSource{Path: f.data, SHA256: ds.SHA256}}
		var labels []snapshot.Label
		if f.feedbackTopic != "" {
			labels, src.Feedback, err = readFeedback(ctx, f, store, log)
			if err != nil {
				return fmt.Errorf("snapshot %s: %w", f.model, err)
			}
		}
		rows := snapshot.Build(ds.Examples, labels)
		m, err := store.Write(f.model, rows, src)
		if err != nil {
			return err
		}
		log.Info("snapshot written", "model", f.model, "id", m.ID, "rows", m.Rows, "parent", m.Parent,
			"base_rows", len(ds.Examples), "feedback_labels", len(labels), "dir", store.Root())
		return printManifest(f, stdout, m)
	}
}

// readFeedback returns the model's labels and the offsets they were read
// up to, after dead-lettering the rejects that are new since the model's
// latest snapshot.
func readFeedback(ctx context.Context, f *dataFlags, store *snapshot.Store, log *slog.Logger) ([]snapshot.Label, *snapshot.FeedbackOffsets, error) {
	brokers := splitList(f.brokers)
	if len(brokers) == 0 {
		return nil, nil, errors.New(`--brokers is required to read --feedback-topic (--feedback-topic "" snapshots the base data only)`)
	}
	known := splitList(f.known)
	if len(known) > 0 {
		known = append(known, f.model)
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	fb, err := snapshot.ReadFeedback(ctx, snapshot.FeedbackSource{Brokers: brokers, Topic: f.feedbackTopic,
		MaxTextBytes: f.maxTextBytes, KnownModels: known, Logger: log})
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (--timeout %s; is the broker reachable?)", err, f.timeout)
	}
	if err != nil {
		return nil, nil, err
	}
	rejects := fb.Rejects
	switch prev, err := store.Latest(f.model); {
	case err == nil && prev.Manifest.Feedback != nil && prev.Manifest.Feedback.Topic == fb.Topic:
		rejects = fb.RejectsSince(prev.Manifest.Feedback.Offsets)
	case err != nil && !errors.Is(err, snapshot.ErrNotFound):
		return nil, nil, err
	}
	codes := map[string]int{}
	for _, r := range rejects {
		codes[r.Code]++
	}
	switch {
	case len(rejects) == 0:
	case f.deadLetterTopic == "":
		log.Warn("feedback rejects not dead-lettered (--dead-letter-topic is empty)", "rejects", len(rejects), "reasons", codes)
	default:
		n, err := snapshot.PublishRejects(ctx, brokers, f.deadLetterTopic, rejects)
		if err != nil {
			return nil, nil, err
		}
		log.Info("feedback rejects dead-lettered", "topic", f.deadLetterTopic, "rejects", n, "reasons", codes)
	}
	return fb.For(f.model), &snapshot.FeedbackOffsets{Topic: fb.Topic, Offsets: fb.Offsets}, nil
}

func printManifest(f *dataFlags, w io.Writer, m snapshot.Manifest) error {
	return f.print(w, m, func(w io.Writer) {
		fmt.Fprintf(w, "snapshot\t%s\n", m.ID)
		fmt.Fprintf(w, "model\t%s\n", m.Model)
		fmt.Fprintf(w, "created\t%s\n", m.CreatedAt.Format(time.RFC3339))
		fmt.Fprintf(w, "rows\t%d (base %d, feedback %d)\n", m.Rows, m.OriginCounts[snapshot.OriginBase], m.OriginCounts[snapshot.OriginFeedback])
		fmt.Fprintf(w, "sha256\t%s\n", m.SHA256)
		if m.Base != nil {
			fmt.Fprintf(w, "base\t%s (sha256 %s)\n", m.Base.Path, shortHash(m.Base.SHA256))
		}
		if m.Feedback != nil {
			var offs []string
			for _, p := range slices.Sorted(maps.Keys(m.Feedback.Offsets)) {
				offs = append(offs, fmt.Sprintf("%d:%d", p, m.Feedback.Offsets[p]))
			}
			fmt.Fprintf(w, "feedback\t%s up to %s\n", m.Feedback.Topic, orDash(strings.Join(offs, " ")))
		}
		fmt.Fprintf(w, "parent\t%s\n\nLABEL\tROWS\n", orDash(m.Parent))
		for _, l := range slices.Sorted(maps.Keys(m.LabelCounts)) {
			fmt.Fprintf(w, "%s\t%d\n", l, m.LabelCounts[l])
		}
	})
}

func printDiff(w io.Writer, d snapshot.Diff, limit int) {
	fmt.Fprintln(w, d.String())
	if len(d.Labels) > 0 {
		fmt.Fprintln(w, "\nLABEL\tBEFORE\tAFTER\tDELTA")
		for _, l := range d.Labels {
			fmt.Fprintf(w, "%s\t%d\t%d\t%+d\n", l.Label, l.Before, l.After, l.Delta)
		}
	}
	if len(d.Added)+len(d.Removed)+len(d.Relabelled) == 0 {
		return
	}
	fmt.Fprintln(w, "\nCHANGE\tID\tLABEL\tTEXT")
	list := func(n int, row func(i int)) {
		shown := n
		if limit > 0 {
			shown = min(n, limit)
		}
		for i := range shown {
			row(i)
		}
		if shown < n {
			fmt.Fprintf(w, "\t(%d more; --json lists all)\t\t\n", n-shown)
		}
	}
	list(len(d.Added), func(i int) {
		r := d.Added[i]
		fmt.Fprintf(w, "added\t%s\t%s\t%s\n", r.ID, r.Label, clip(r.Text))
	})
	list(len(d.Removed), func(i int) {
		r := d.Removed[i]
		fmt.Fprintf(w, "removed\t%s\t%s\t%s\n", r.ID, r.Label, clip(r.Text))
	})
	list(len(d.Relabelled), func(i int) {
		r := d.Relabelled[i]
		id := r.After.ID
		if r.Before.ID != r.After.ID {
			id = r.Before.ID + " -> " + r.After.ID
		}
		fmt.Fprintf(w, "relabelled\t%s\t%s -> %s\t%s\n", id, r.Before.Label, r.After.Label, clip(r.After.Text))
	})
}

// clip quotes a text for a table cell, cut to 60 runes.
func clip(s string) string {
	const n = 60
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n]) + "…"
	}
	return fmt.Sprintf("%q", s)
}
