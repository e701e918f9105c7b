package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/bundle"
	"github.com/triage-ml/triage/registry"
	"github.com/triage-ml/triage/serving"
	"github.com/triage-ml/triage/trainer"
)

// modelsFlags are shared by every `triage models` subcommand.
type modelsFlags struct {
	g                           globals
	rt                          runtimeFlags
	registryDir, brokers, topic string
	who, reason                 string
	asJSON, noVerify, remove    bool
	promote                     bool
}

func (f *modelsFlags) register(fs *flag.FlagSet) {
	f.g.register(fs)
	f.rt.register(fs)
	fs.StringVar(&f.registryDir, "registry", "data/registry", "model registry folder")
	fs.StringVar(&f.brokers, "brokers", "127.0.0.1:9092", "Kafka bootstrap addresses: alias moves are announced on --updates-topic")
	fs.StringVar(&f.topic, "updates-topic", serving.UpdatesTopic, `topic alias moves are announced on ("" records them only; serving processes then follow within --reconcile-interval)`)
	fs.StringVar(&f.who, "who", defaultWho(), "who moves the alias (recorded in the history)")
	fs.StringVar(&f.reason, "reason", "", "why (recorded in the history)")
	fs.BoolVar(&f.asJSON, "json", false, "print JSON")
	fs.BoolVar(&f.promote, "promote", false, "register: also make the new version the champion")
	fs.BoolVar(&f.remove, "remove", false, "alias: remove the alias instead of setting it")
	fs.BoolVar(&f.noVerify, "no-verify", false, "move the alias without first loading the version in ONNX Runtime (not recommended)")
}

func defaultWho() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

// open returns the store and an Admin that announces moves.
func (f *modelsFlags) open() (*registry.Local, serving.Admin, func(), error) {
	opts, err := f.rt.options()
	if err != nil {
		return nil, serving.Admin{}, nil, err
	}
	a := &app{opts: opts}
	ro := registry.Options{Verify: a.verify}
	if f.noVerify {
		ro.Verify = nil
	}
	store, err := registry.OpenLocal(f.registryDir, ro)
	if err != nil {
		return nil, serving.Admin{}, nil, fmt.Errorf("--registry %s: %w", f.registryDir, err)
	}
	adm := serving.Admin{Store: store}
	closeFn := func() {}
	if f.topic != "" {
		an, err := serving.NewAnnouncer(splitList(f.brokers), f.topic, store, nil)
		if err != nil {
			return nil, serving.Admin{}, nil, err
		}
		adm.Announce, closeFn = an.Announce, an.Close
	}
	return store, adm, closeFn, nil
}

func (f *modelsFlags) print(w io.Writer, v any, text func(io.Writer)) error {
	return printResult(w, f.asJSON, v, text)
}

func modelsCommand(stdout, stderr io.Writer) *ffcli.Command {
	sub := func(name, usage, help string, nargs int, run func(ctx context.Context, f *modelsFlags, args []string) error) *ffcli.Command {
		fs := flag.NewFlagSet("triage models "+name, flag.ContinueOnError)
		fs.SetOutput(stderr)
		f := &modelsFlags{}
		f.register(fs)
		return &ffcli.Command{Name: name, ShortUsage: "triage models " + usage, ShortHelp: help, FlagSet: fs, Options: parseOptions(),
			Exec: func(ctx context.Context, args []string) error {
				args, err := interspersed(fs, args)
				if err != nil {
					return err
				}
				if nargs >= 0 && len(args) != nargs {
					return fmt.Errorf("usage: triage models %s", usage)
				}
				if _, err := f.g.logger(stderr); err != nil {
					return err
				}
				return run(ctx, f, args)
			}}
	}
	// move records an alias move and announces it; a move the registry
	// recorded but Kafka did not take is a warning, not a failure (serving
	// processes reconcile with the registry).
	var move func(ctx context.Context, f *modelsFlags, do func(serving.Admin) (registry.Move, error)) (registry.Move, error)
	move = func(ctx context.Context, f *modelsFlags, do func(serving.Admin) (registry.Move, error)) (registry.Move, error) {
		_, adm, closeFn, err := f.open()
		if err != nil {
			return registry.Move{}, err
		}
		defer closeFn()
		mv, err := do(adm)
		if err != nil && !errors.Is(err, serving.ErrNotAnnounced) {
			return mv, err
		}
		if err != nil {
			fmt.Fprintln(stderr, "triage: warning:", err)
		}
		return mv, nil
	}
	printMove := func(f *modelsFlags, mv registry.Move) error {
		return f.print(stdout, mv, func(w io.Writer) {
			fmt.Fprintf(w, "%s %s: %s -> %s (%s by %s)\n", mv.Model, mv.Alias, orDash(mv.From), orDash(mv.To), mv.Kind, mv.Who)
		})
	}
	c := &ffcli.Command{
		Name:       "models",
		ShortUsage: "triage models <list|show|register|promote|rollback|alias> [flags]",
		ShortHelp:  "the model registry: versions, aliases (champion serves), history; moves are announced to every serving process",
		Subcommands: []*ffcli.Command{
			sub("list", "list [--json]", "every model with its aliases and latest version", 0, func(ctx context.Context, f *modelsFlags, _ []string) error {
				store, _, closeFn, err := f.open()
				if err != nil {
					return err
				}
				closeFn()
				type row struct {
					Model    string            `json:"model"`
					Aliases  map[string]string `json:"aliases"`
					Versions int               `json:"versions"`
					Latest   string            `json:"latest"`
				}
				names, err := store.Models(ctx)
				if err != nil {
					return err
				}
				rows := []row{}
				for _, n := range names {
					vs, err := store.Versions(ctx, n)
					if err != nil {
						return err
					}
					al, err := store.Aliases(ctx, n)
					if err != nil {
						return err
					}
					r := row{Model: n, Aliases: al, Versions: len(vs)}
					if len(vs) > 0 {
						r.Latest = vs[len(vs)-1].Version
					}
					rows = append(rows, r)
				}
				return f.print(stdout, rows, func(w io.Writer) {
					fmt.Fprintln(w, "MODEL\tCHAMPION\tVERSIONS\tLATEST\tALIASES")
					for _, r := range rows {
						fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", r.Model, orDash(r.Aliases[registry.Champion]), r.Versions, r.Latest, aliasList(r.Aliases))
					}
				})
			}),
			sub("show", "show NAME [--json]", "versions (hash, lineage, load failures), aliases and alias history of one model", 1, func(ctx context.Context, f *modelsFlags, args []string) error {
				store, _, closeFn, err := f.open()
				if err != nil {
					return err
				}
				closeFn()
				name := args[0]
				vs, err := store.Versions(ctx, name)
				if err != nil {
					return err
				}
				if len(vs) == 0 {
					return fmt.Errorf("model %q: %w in %s", name, registry.ErrNotFound, f.registryDir)
				}
				al, err := store.Aliases(ctx, name)
				if err != nil {
					return err
				}
				hist, err := store.History(ctx, name)
				if err != nil {
					return err
				}
				out := struct {
					Model    string             `json:"model"`
					Aliases  map[string]string  `json:"aliases"`
					Versions []registry.Version `json:"versions"`
					History  []registry.Move    `json:"history"`
				}{name, al, vs, hist}
				return f.print(stdout, out, func(w io.Writer) {
					fmt.Fprintf(w, "model %s\taliases: %s\n\n", name, aliasList(al))
					fmt.Fprintln(w, "VERSION\tHASH\tCREATED\tVAL ACC\tMACRO-F1\tPARENT\tLOADS")
					for _, v := range vs {
						fmt.Fprintf(w, "%s\t%s\t%s\t%.4f\t%.4f\t%s\t%s\n", v.Version, shortHash(v.Hash), v.CreatedAt.Format("2006-01-02 15:04:05"),
							v.Lineage.Metrics["val_accuracy"], v.Lineage.Metrics["val_macro_f1"], orDash(v.Lineage.Parent), loadSummary(v.Loads))
					}
					fmt.Fprintln(w, "\nWHEN\tALIAS\tFROM\tTO\tKIND\tWHO\tWHY")
					for _, m := range hist {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.At.Format("2006-01-02 15:04:05"), m.Alias, orDash(m.From), orDash(m.To), m.Kind, m.Who, m.Why)
					}
				})
			}),
			sub("register", "register NAME BUNDLE_DIR [--promote]", "store a trained bundle as a new version (a copy; the same content is the same version)", 2, func(ctx context.Context, f *modelsFlags, args []string) error {
				store, _, closeFn, err := f.open()
				if err != nil {
					return err
				}
				closeFn()
				b, err := bundle.Load(args[1])
				if err != nil {
					return err
				}
				v, err := store.Register(ctx, args[0], args[1], trainer.LineageOf(b.Manifest), f.who)
				if err != nil {
					return err
				}
				if f.promote {
					if _, err := move(ctx, f, func(adm serving.Admin) (registry.Move, error) {
						return adm.Promote(ctx, v.Model, v.Version, f.who, cmp.Or(f.reason, "registered with --promote"))
					}); err != nil {
						return err
					}
				}
				return f.print(stdout, v, func(w io.Writer) {
					fmt.Fprintf(w, "%s %s\t%s\t%s\n", v.Model, v.Version, v.Hash, v.Dir)
				})
			}),
			sub("promote", "promote NAME VERSION [--reason WHY]", "make VERSION the champion (verified to load first); every serving process swaps to it", 2, func(ctx context.Context, f *modelsFlags, args []string) error {
				mv, err := move(ctx, f, func(adm serving.Admin) (registry.Move, error) {
					return adm.Promote(ctx, args[0], args[1], f.who, f.reason)
				})
				if err != nil {
					return err
				}
				return printMove(f, mv)
			}),
			sub("rollback", "rollback NAME [--reason WHY]", "move the champion back to the version that served before it", 1, func(ctx context.Context, f *modelsFlags, args []string) error {
				mv, err := move(ctx, f, func(adm serving.Admin) (registry.Move, error) {
					return adm.Rollback(ctx, args[0], f.who, f.reason)
				})
				if err != nil {
					return err
				}
				return printMove(f, mv)
			}),
			sub("alias", "alias NAME ALIAS VERSION | alias NAME ALIAS --remove", "point any alias (challenger, ...) at a version, or remove it", -1, func(ctx context.Context, f *modelsFlags, args []string) error {
				if !(len(args) == 3 && !f.remove) && !(len(args) == 2 && f.remove) {
					return errors.New("usage: triage models alias NAME ALIAS VERSION, or triage models alias --remove NAME ALIAS")
				}
				mv, err := move(ctx, f, func(adm serving.Admin) (registry.Move, error) {
					if f.remove {
						return adm.RemoveAlias(ctx, args[0], args[1], f.who, f.reason)
					}
					return adm.SetAlias(ctx, args[0], args[1], args[2], f.who, f.reason)
				})
				if err != nil {
					return err
				}
				return printMove(f, mv)
			}),
		},
	}
	c.Exec = groupExec(&c, "triage models")
	return c
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func shortHash(h string) string {
	h = strings.TrimPrefix(h, "sha256:")
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func aliasList(al map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(al)) {
		parts = append(parts, k+"="+al[k])
	}
	return orDash(strings.Join(parts, " "))
}

func loadSummary(rs []registry.LoadReport) string {
	var parts []string
	for _, r := range rs {
		if r.OK {
			parts = append(parts, r.Instance+":ok")
		} else {
			parts = append(parts, r.Instance+":FAILED "+r.Error)
		}
	}
	return orDash(strings.Join(parts, "; "))
}

// interspersed lets flags follow the positional arguments (`triage models
// promote support v3 --reason why`): the flag package stops at the first
// positional one, so parse what follows each.
func interspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return pos, nil
}

// printResult writes v as indented JSON, or text's table aligned in
// columns: the two output forms of every registry, data and runs command.
func printResult(w io.Writer, asJSON bool, v any, text func(io.Writer)) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	text(tw)
	return tw.Flush()
}
