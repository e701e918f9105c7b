// Command gen writes the generated pages of the documentation site (see
// mkdocs.yml and scripts/build-docs.sh):
//
//	rest.md           the REST reference, from the gateway's OpenAPI document
//	topics.md         the Kafka topics and every record JSON Schema
//	configuration.md  every command's flags, from `triage flags`
//
// Usage:
//
//	go run ./docs/gen -out DIR (-triage BIN | -flags FILE)
//
// -triage runs BIN flags (a triage binary built from this tree); -flags
// reads that JSON from a file ("-" = stdin) instead.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/triage-ml/triage/schemas"
)

// Page file names under -out.
const (
	restPage   = "rest.md"
	topicsPage = "topics.md"
	configPage = "configuration.md"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "docs/gen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	out := fs.String("out", "", "folder the pages are written to (created)")
	bin := fs.String("triage", "", "triage binary whose `flags` command gives the configuration reference")
	flagsFile := fs.String("flags", "", `JSON from "triage flags" ("-" = stdin), instead of -triage`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return errors.New("usage: go run ./docs/gen -out DIR (-triage BIN | -flags FILE)")
	}
	flagsJSON, err := readFlags(*bin, *flagsFile)
	if err != nil {
		return err
	}
	pages, err := generate(flagsJSON)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for name, text := range pages {
		if err := writeIfChanged(filepath.Join(*out, name), []byte(text)); err != nil {
			return err
		}
	}
	return nil
}

// generate renders every page, by file name.
func generate(flagsJSON []byte) (map[string]string, error) {
	openapi, err := gatewayOpenAPI()
	if err != nil {
		return nil, err
	}
	rest, err := renderREST(openapi)
	if err != nil {
		return nil, err
	}
	topics, err := renderTopics(schemas.Files())
	if err != nil {
		return nil, err
	}
	config, err := renderConfig(flagsJSON)
	if err != nil {
		return nil, err
	}
	return map[string]string{restPage: rest, topicsPage: topics, configPage: config}, nil
}

func readFlags(bin, file string) ([]byte, error) {
	switch {
	case bin != "" && file != "":
		return nil, errors.New("-triage and -flags exclude each other")
	case bin != "":
		return triageFlags(bin)
	case file == "-":
		return io.ReadAll(os.Stdin)
	case file != "":
		return os.ReadFile(file)
	}
	return nil, errors.New("need -triage BIN or -flags FILE for the configuration reference")
}

// triageFlags runs `BIN flags` (JSON).
func triageFlags(bin string) ([]byte, error) {
	cmd := exec.Command(bin, "flags")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s flags: %w", bin, err)
	}
	return out, nil
}

// writeIfChanged leaves an up-to-date file alone, so `mkdocs serve` does
// not rebuild for nothing.
func writeIfChanged(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	return os.WriteFile(path, data, 0o644)
}
