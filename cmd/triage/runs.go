package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/tracking"
)

// runsFlags are shared by every `triage runs` subcommand.
type runsFlags struct {
	g                         globals
	runsDir, mlflowURI, model string
	asJSON                    bool
	limit                     int
}

func (f *runsFlags) register(fs *flag.FlagSet) {
	f.g.register(fs)
	fs.StringVar(&f.runsDir, "runs-dir", "data/runs", "local run log (used without --mlflow-uri)")
	fs.StringVar(&f.mlflowURI, "mlflow-uri", "", "MLflow tracking server, e.g. http://127.0.0.1:5000 (token: MLFLOW_TRACKING_TOKEN); empty reads --runs-dir")
	fs.StringVar(&f.model, "model", "", "list: only this model's runs (its experiment)")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON")
	fs.IntVar(&f.limit, "limit", 50, "list: at most this many runs, newest first (0 = all)")
}

// reader is the run log the flags name.
func (f *runsFlags) reader() (tracking.Reader, string, error) {
	if f.mlflowURI == "" {
		return tracking.NewLocal(f.runsDir, nil), f.runsDir, nil
	}
	// A person waits for the answer: retry briefly, and never skip calls.
	c, err := tracking.NewMLflow(f.mlflowURI, tracking.MLflowOptions{
		RetryBudget: 10 * time.Second, Cooldown: -1, Token: os.Getenv("MLFLOW_TRACKING_TOKEN")})
	if err != nil {
		return nil, "", fmt.Errorf("--mlflow-uri: %w", err)
	}
	return c, c.URI(), nil
}

func (f *runsFlags) print(w io.Writer, v any, text func(io.Writer)) error {
	return printResult(w, f.asJSON, v, text)
}

func runsCommand(stdout, stderr io.Writer) *ffcli.Command {
	sub := func(name, usage, help string, nargs int, run func(ctx context.Context, f *runsFlags, args []string) error) *ffcli.Command {
		fs := flag.NewFlagSet("triage runs "+name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		f := &runsFlags{}
		f.register(fs)
		return &ffcli.Command{Name: name, ShortUsage: "triage runs " + usage, ShortHelp: help, FlagSet: fs, Options: parseOptions(),
			Exec: func(ctx context.Context, args []string) error {
				args, err := interspersed(fs, args)
				if err != nil {
					return err
				}
				if len(args) != nargs {
					return fmt.Errorf("usage: triage runs %s", usage)
				}
				if f.limit < 0 {
					return fmt.Errorf("--limit %d: must be 0 (all) or more", f.limit)
				}
				if _, err := f.g.logger(stderr); err != nil {
					return err
				}
				return run(ctx, f, args)
			}}
	}
	c := &ffcli.Command{
		Name:       "runs",
		ShortUsage: "triage runs <list|show> [flags]",
		ShortHelp:  "training runs recorded by the trainer: parameters, per-epoch metrics, tags, bundles (local run log or MLflow)",
		Subcommands: []*ffcli.Command{
			sub("list", "list [--model NAME] [--json]", "runs, newest first, with their latest metrics", 0, func(ctx context.Context, f *runsFlags, _ []string) error {
				rd, _, err := f.reader()
				if err != nil {
					return err
				}
				runs, err := rd.List(ctx, f.model, f.limit)
				if err != nil {
					return err
				}
				return f.print(stdout, runs, func(w io.Writer) {
					fmt.Fprintln(w, "RUN\tMODEL\tNAME\tSTATUS\tSTARTED\tDURATION\tPARENT\tMETRICS")
					for _, r := range runs {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Experiment, orDash(r.Name), r.Status,
							r.StartTime.Local().Format("2006-01-02 15:04:05"), duration(r), orDash(shortID(r.ParentID)), latestMetrics(r, 4))
					}
				})
			}),
			sub("show", "show RUN_ID [--json]", "one run: parameters, metric history, tags, artifacts and child runs", 1, func(ctx context.Context, f *runsFlags, args []string) error {
				rd, where, err := f.reader()
				if err != nil {
					return err
				}
				rec, err := rd.Get(ctx, args[0])
				if err != nil {
					return fmt.Errorf("%w (%s)", err, where)
				}
				all, err := rd.List(ctx, rec.Experiment, 0)
				if err != nil {
					return err
				}
				children := []tracking.RunRecord{}
				for _, r := range all {
					if r.ParentID == rec.ID {
						children = append(children, r)
					}
				}
				slices.SortStableFunc(children, func(a, b tracking.RunRecord) int { return a.StartTime.Compare(b.StartTime) })
				out := struct {
					tracking.RunRecord
					Children []tracking.RunRecord `json:"children"`
				}{rec, children}
				return f.print(stdout, out, func(w io.Writer) { printRun(w, rec, children) })
			}),
		},
	}
	c.Exec = groupExec(&c, "triage runs")
	return c
}

func printRun(w io.Writer, r tracking.RunRecord, children []tracking.RunRecord) {
	fmt.Fprintf(w, "run\t%s\nmodel\t%s\nname\t%s\nstatus\t%s\nparent\t%s\n", r.ID, r.Experiment, orDash(r.Name), r.Status, orDash(r.ParentID))
	fmt.Fprintf(w, "started\t%s\n", r.StartTime.Local().Format(time.RFC3339))
	if r.EndTime != nil {
		fmt.Fprintf(w, "ended\t%s (%s)\n", r.EndTime.Local().Format(time.RFC3339), duration(r))
	}
	fmt.Fprintf(w, "artifacts\t%s\n", orDash(r.ArtifactURI))
	if len(r.Params) > 0 {
		fmt.Fprintln(w, "\nPARAM\tVALUE")
		for _, k := range slices.Sorted(maps.Keys(r.Params)) {
			fmt.Fprintf(w, "%s\t%s\n", k, r.Params[k])
		}
	}
	if len(r.Metrics) > 0 {
		fmt.Fprintln(w, "\nMETRIC\tLAST\tSTEP\tPOINTS\tMIN\tMAX")
		for _, k := range slices.Sorted(maps.Keys(r.Metrics)) {
			last, _ := r.Latest(k)
			lo, hi := math.Inf(1), math.Inf(-1)
			for _, p := range r.Metrics[k] {
				lo, hi = math.Min(lo, p.Value), math.Max(hi, p.Value)
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\n", k, num(last.Value), last.Step, len(r.Metrics[k]), num(lo), num(hi))
		}
	}
	// MLflow's own tags (mlflow.runName, mlflow.parentRunId, ...) are shown
	// above or are internal; --json has them all.
	var tags []string
	for _, k := range slices.Sorted(maps.Keys(r.Tags)) {
		if !strings.HasPrefix(k, "mlflow.") {
			tags = append(tags, k)
		}
	}
	if len(tags) > 0 {
		fmt.Fprintln(w, "\nTAG\tVALUE")
		for _, k := range tags {
			fmt.Fprintf(w, "%s\t%s\n", k, r.Tags[k])
		}
	}
	if len(r.Artifacts) > 0 {
		fmt.Fprintln(w, "\nARTIFACT\tSIZE")
		for _, a := range r.Artifacts {
			fmt.Fprintf(w, "%s\t%d\n", a.Path, a.Size)
		}
	}
	if len(children) > 0 {
		fmt.Fprintln(w, "\nCHILD RUN\tNAME\tSTATUS\tMETRICS")
		for _, c := range children {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.ID, orDash(c.Name), c.Status, latestMetrics(c, 4))
		}
	}
}

// latestMetrics is "key=value ..." of the first n metrics by name.
func latestMetrics(r tracking.RunRecord, n int) string {
	keys := slices.Sorted(maps.Keys(r.Metrics))
	var parts []string
	for i, k := range keys {
		if i == n {
			parts = append(parts, fmt.Sprintf("(+%d)", len(keys)-n))
			break
		}
		p, _ := r.Latest(k)
		parts = append(parts, k+"="+num(p.Value))
	}
	return orDash(strings.Join(parts, " "))
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

func duration(r tracking.RunRecord) string {
	if r.EndTime == nil {
		return "-"
	}
	return r.EndTime.Sub(r.StartTime).Round(time.Second).String()
}

func shortID(id string) string { return id[:min(len(id), 8)] }
