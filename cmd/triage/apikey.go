package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/peterbourgon/ff/v3/ffcli"

	"github.com/triage-ml/triage/gateway"
)

func apikeyCommand(stdout, stderr io.Writer) *ffcli.Command {
	c := &ffcli.Command{
		Name:       "apikey",
		ShortUsage: "triage apikey <add|list> --file FILE [flags]",
		ShortHelp:  "manage the gateway's API keys file (salted hashes only; secrets are shown once)",
		Subcommands: []*ffcli.Command{
			apikeyAddCommand(stdout, stderr),
			apikeyListCommand(stdout, stderr),
		},
	}
	c.Exec = groupExec(&c, "triage apikey")
	return c
}

func apikeyAddCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage apikey add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "API keys file; created (mode 0600) if missing; JSON when named .json, else YAML")
	name := fs.String("name", "", "key name (shown in logs and metrics)")
	scopes := fs.String("scopes", "", "comma-separated scopes: "+strings.Join(gateway.Scopes, ", ")+" (admin implies all)")
	rate := fs.Float64("rate", 0, "requests/s for this key (0 = the gateway's --rate)")
	burst := fs.Int("burst", 0, "burst for this key (0 = the gateway's --burst)")
	return &ffcli.Command{
		Name:       "add",
		ShortUsage: "triage apikey add --file FILE --name NAME --scopes predict,feedback [--rate 50 --burst 100]",
		ShortHelp:  "add a key and print its secret once (stdout); the file keeps only a salted SHA-256",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(_ context.Context, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("apikey add: unexpected arguments %q", args)
			}
			if *file == "" || *name == "" || *scopes == "" {
				return errors.New("apikey add: --file, --name and --scopes are required")
			}
			if *rate < 0 || *burst < 0 {
				return errors.New("apikey add: --rate and --burst must not be negative")
			}
			secret, err := gateway.AddKey(*file, *name, splitList(*scopes), *rate, *burst)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "added key %q to %s; the secret below is shown only now: store it safely\n", *name, *file)
			_, err = fmt.Fprintln(stdout, secret)
			return err
		},
	}
}

func apikeyListCommand(stdout, stderr io.Writer) *ffcli.Command {
	fs := flag.NewFlagSet("triage apikey list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "API keys file")
	return &ffcli.Command{
		Name:       "list",
		ShortUsage: "triage apikey list --file FILE",
		ShortHelp:  "print each key's name, scopes and limits as a JSON line (never secrets or hashes)",
		FlagSet:    fs,
		Options:    parseOptions(),
		Exec: func(context.Context, []string) error {
			if *file == "" {
				return errors.New("apikey list: --file is required")
			}
			keys, err := gateway.LoadKeys(*file)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			for _, k := range keys {
				created := ""
				if !k.CreatedAt.IsZero() {
					created = k.CreatedAt.Format(time.RFC3339)
				}
				if err := enc.Encode(struct {
					Name      string   `json:"name"`
					Scopes    []string `json:"scopes"`
					Rate      float64  `json:"rate,omitempty"`
					Burst     int      `json:"burst,omitempty"`
					CreatedAt string   `json:"created_at,omitempty"`
				}{k.Name, k.Scopes, k.Rate, k.Burst, created}); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
