package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// FlagDoc is one flag of one command, as `triage flags` lists it: what
// deployment files and the configuration reference are checked against.
type FlagDoc struct {
	Command string `json:"command"` // "run", "models promote", ...
	Name    string `json:"name"`
	Env     string `json:"env,omitempty"` // the TRIAGE_* variable that sets it ("" when exempt)
	Default string `json:"default"`
	Usage   string `json:"usage"`
}

// flagsCommand lists every command's flags, so compose files, Helm values
// and the docs are checked against the binary rather than by hand.
func flagsCommand(root *ffcli.Command, stdout io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage flags", flag.ContinueOnError)
	format := fs.String("format", "json", `output: "json" (one array) or "markdown" (a table per command)`)
	return &ffcli.Command{
		Name: "flags", ShortUsage: "triage flags [--format json|markdown]", FlagSet: fs,
		ShortHelp: "list every command's flags with their TRIAGE_* variables and defaults (for deployment checks and the docs)",
		Exec: func(context.Context, []string) error {
			docs := collectFlags(root, "")
			switch *format {
			case "json":
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(docs)
			case "markdown":
				return writeFlagsMarkdown(stdout, docs)
			}
			return fmt.Errorf("--format %q: use json or markdown", *format)
		},
	}
}

func collectFlags(c *ffcli.Command, prefix string) []FlagDoc {
	var out []FlagDoc
	for _, sub := range c.Subcommands {
		name := strings.TrimSpace(prefix + " " + sub.Name)
		if sub.FlagSet != nil {
			sub.FlagSet.VisitAll(func(f *flag.Flag) {
				d := FlagDoc{Command: name, Name: f.Name, Default: f.DefValue, Usage: f.Usage}
				if !envExempt[f.Name] {
					d.Env = envName(f.Name)
				}
				out = append(out, d)
			})
		}
		out = append(out, collectFlags(sub, name)...)
	}
	return out
}

func writeFlagsMarkdown(w io.Writer, docs []FlagDoc) error {
	var cmds []string
	for _, d := range docs {
		if !slices.Contains(cmds, d.Command) {
			cmds = append(cmds, d.Command)
		}
	}
	for _, c := range cmds {
		fmt.Fprintf(w, "## triage %s\n\n| flag | environment | default | meaning |\n|---|---|---|---|\n", c)
		for _, d := range docs {
			if d.Command != c {
				continue
			}
			def := d.Default
			if def == "" {
				def = `""`
			}
			fmt.Fprintf(w, "| `--%s` | `%s` | `%s` | %s |\n", d.Name, d.Env, strings.ReplaceAll(def, "|", `\|`),
				strings.ReplaceAll(strings.ReplaceAll(d.Usage, "|", `\|`), "\n", " "))
		}
		fmt.Fprintln(w)
	}
	return nil
}
