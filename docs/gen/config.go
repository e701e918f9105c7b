package main

import (
	"encoding/json"
	"fmt"
	"strings"
)

// flagDoc is one row of `triage flags` (JSON): one flag of one command.
type flagDoc struct {
	Command string `json:"command"`
	Name    string `json:"name"`
	Env     string `json:"env"`
	Default string `json:"default"`
	Usage   string `json:"usage"`
}

// parseFlags decodes `triage flags` output and lists its commands in
// order of first appearance.
func parseFlags(raw []byte) ([]flagDoc, []string, error) {
	var docs []flagDoc
	if err := json.Unmarshal(raw, &docs); err != nil {
		return nil, nil, fmt.Errorf("triage flags output: %w", err)
	}
	if len(docs) == 0 {
		return nil, nil, fmt.Errorf("triage flags output: no flags")
	}
	var cmds []string
	seen := map[string]bool{}
	for _, d := range docs {
		if d.Command == "" || d.Name == "" {
			return nil, nil, fmt.Errorf("triage flags output: a row without command or name: %+v", d)
		}
		if !seen[d.Command] {
			seen[d.Command] = true
			cmds = append(cmds, d.Command)
		}
	}
	return docs, cmds, nil
}

// commandAnchor is a command section's heading id, e.g. "triage-models-promote".
func commandAnchor(cmd string) string { return "triage-" + slug(cmd) }

// renderConfig renders `triage flags` (JSON) as the configuration reference.
func renderConfig(raw []byte) (string, error) {
	docs, cmds, err := parseFlags(raw)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(generatedNote("`triage flags` of a freshly built binary"))
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("Every command of the `triage` binary and its flags, as the binary itself lists them (`triage flags`, " +
		"or `triage flags --format markdown`). Each flag can also be set by its `TRIAGE_*` environment variable " +
		"(`--max-epochs` → `TRIAGE_MAX_EPOCHS`) or in a YAML file given with `--config` (keys are flag names); " +
		"flags win over the environment, which wins over the file. Flags without a variable (`—`) are not read from the environment.\n\n" +
		"Defaults are those of the machine the page was built on: a few follow the environment " +
		"(the data folder follows `TRIAGE_DATA_DIR`, `--who` the user name).\n\n")
	b.WriteString("## Commands\n\n| command | flags |\n|---|---:|\n")
	count := map[string]int{}
	for _, d := range docs {
		count[d.Command]++
	}
	for _, c := range cmds {
		fmt.Fprintf(&b, "| [`triage %s`](#%s) | %d |\n", c, commandAnchor(c), count[c])
	}
	b.WriteString("\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "## triage %s {#%s}\n\n| flag | environment | default | meaning |\n|---|---|---|---|\n", c, commandAnchor(c))
		for _, d := range docs {
			if d.Command != c {
				continue
			}
			env := "—"
			if d.Env != "" {
				env = "`" + d.Env + "`"
			}
			fmt.Fprintf(&b, "| `--%s` | %s | %s | %s |\n", d.Name, env, code(d.Default), inline(d.Usage, true))
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}
