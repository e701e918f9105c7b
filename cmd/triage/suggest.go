package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/peterbourgon/ff/v3/ffcli"
)

// suggest returns ` (did you mean "x"?)` for the candidate nearest to
// name, when one is close enough to be a likely typo, else "".
func suggest(name string, candidates []string) string {
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(name, c)
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > max(2, len(name)/3) || (strings.Contains(best, name) && bestD > len(best)/2) {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// groupExec is the Exec of a command that only groups subcommands: no
// arguments prints its usage; anything else is an unknown subcommand, an
// error (a typo in a deployment script must not pass as success).
func groupExec(cmd **ffcli.Command, path string) func(context.Context, []string) error {
	return func(_ context.Context, args []string) error {
		if len(args) == 0 {
			return flag.ErrHelp
		}
		var names []string
		for _, sc := range (*cmd).Subcommands {
			names = append(names, sc.Name)
		}
		// main prefixes every error with "triage: ", so name only what is below it.
		where := strings.TrimPrefix(strings.TrimPrefix(path, "triage"), " ")
		if where != "" {
			where += ": "
		}
		return fmt.Errorf("%sunknown command %q%s; commands: %s", where, args[0], suggest(args[0], names), strings.Join(names, ", "))
	}
}

// explainFlagError names an unknown flag's nearest known one.
func explainFlagError(root *ffcli.Command, args []string, err error) error {
	const undefined = "flag provided but not defined: -"
	msg := err.Error()
	i := strings.Index(msg, undefined)
	if i < 0 {
		return err
	}
	name := strings.TrimLeft(msg[i+len(undefined):], "-")
	cmd, at := findCommand(root, args)
	path := root.Name
	if at >= 0 {
		var names []string
		for _, a := range args[:at+1] {
			if !strings.HasPrefix(a, "-") {
				names = append(names, a)
			}
		}
		path += " " + strings.Join(names, " ")
	}
	var names []string
	if cmd.FlagSet != nil {
		cmd.FlagSet.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	}
	where := strings.TrimPrefix(strings.TrimPrefix(path, "triage"), " ")
	if where != "" {
		where += ": "
	}
	return fmt.Errorf("%sunknown flag --%s%s (see `%s --help`)", where, name, suggest(name, names), path)
}
