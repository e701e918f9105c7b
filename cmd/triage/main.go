// Command triage is the single Triage binary: each role (training,
// evaluation, prediction, and later the streaming consumer and the gateway)
// is a subcommand, and `triage dev` composes them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/ffcli"
	"github.com/peterbourgon/ff/v3/ffyaml"
	"github.com/triage-ml/triage/monitoring/elastic"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// envPrefix: every flag --foo-bar can also be set as TRIAGE_FOO_BAR.
const envPrefix = "TRIAGE"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "triage:", err)
		os.Exit(1)
	}
}

// globals are the flags every subcommand shares.
type globals struct {
	logLevel   string
	config     string
	cpuProfile string
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&g.config, "config", "", "optional YAML config file; keys are flag names")
	fs.StringVar(&g.cpuProfile, "cpu-profile", "", "write a Go CPU profile of the whole run to this file (performance work)")
}

func (g *globals) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", g.logLevel)
	}
	// ECS field names (@timestamp, log.level, message, service.name), so
	// the same lines read alike on stderr and in triage-logs-*.
	l := slog.New(elastic.NewECSJSONHandler(w, &slog.HandlerOptions{Level: lvl}, elastic.DefaultService))
	// Packages without a logger of their own (ONNX Runtime session set-up)
	// log through the default, so it must be this JSON logger too.
	slog.SetDefault(l)
	return l, nil
}

// parseOptions gives each command the same precedence: flags, then
// TRIAGE_* environment variables (see withEnv), then the YAML config file.
func parseOptions() []ff.Option {
	return []ff.Option{
		ff.WithConfigFileFlag("config"),
		ff.WithConfigFileParser(ffyaml.Parser),
		ff.WithAllowMissingConfigFile(false),
	}
}

// envExempt lists flags that take no TRIAGE_* variable because the name is
// taken: TRIAGE_DATA_DIR names the training-data folder, not `dev --data-dir`.
var envExempt = map[string]bool{"data-dir": true}

// envAliases are variables that set a flag besides its TRIAGE_* name:
// TRIAGE_DATA_DIR, the training-data folder's long-standing variable, sets
// --datasets (TRIAGE_DATASETS, when also set, wins).
var envAliases = map[string]string{"datasets": "TRIAGE_DATA_DIR"}

// envName is the variable that sets flag name: --max-epochs -> TRIAGE_MAX_EPOCHS.
func envName(flagName string) string {
	return envPrefix + "_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// withEnv inserts --flag=value for every TRIAGE_* variable of the chosen
// subcommand right after its name, so flags typed by the user (which come
// later, and the flag package lets the last one win) override the
// environment, and both override the config file (ff only fills flags not
// yet set from it).
func withEnv(root *ffcli.Command, args []string, getenv func(string) string) []string {
	cmd, at := findCommand(root, args)
	if at < 0 || cmd.FlagSet == nil {
		return args
	}
	var env []string
	cmd.FlagSet.VisitAll(func(f *flag.Flag) {
		if envExempt[f.Name] {
			return
		}
		v := getenv(envName(f.Name))
		if alias := envAliases[f.Name]; v == "" && alias != "" {
			v = getenv(alias)
		}
		if v != "" {
			env = append(env, "--"+f.Name+"="+v)
		}
	})
	out := append([]string{}, args[:at+1]...)
	out = append(out, env...)
	return append(out, args[at+1:]...)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// JSON from the first line; commands with --log-level replace it.
	slog.SetDefault(slog.New(elastic.NewECSJSONHandler(stderr, nil, elastic.DefaultService)))
	root := &ffcli.Command{
		Name:       "triage",
		ShortUsage: "triage <subcommand> [flags]",
		LongHelp: "Triage classifies customer-support queries and reviews: train models in Go, serve them through ONNX Runtime.\n" +
			"Every flag can also be set through TRIAGE_<FLAG_NAME> or a YAML file given with --config.",
		Subcommands: []*ffcli.Command{
			trainCommand(stdout, stderr),
			tuneCommand(stdout, stderr),
			encoderCommand(os.Stdin, stdout, stderr),
			evalCommand(stdout, stderr),
			predictCommand(stdout, stderr),
			newRunCommand("run", stdout, stderr),
			newRunCommand("dev", stdout, stderr),
			newRunCommand("consumer", stdout, stderr),
			newRunCommand("gateway", stdout, stderr),
			modelsCommand(stdout, stderr),
			runsCommand(stdout, stderr),
			retrainCommand(stdout, stderr),
			dataCommand(stdout, stderr),
			produceCommand(stdout, stderr),
			tailCommand(stdout, stderr),
			apikeyCommand(stdout, stderr),
			tokenizeCommand(os.Stdin, stdout, stderr),
			benchCommand(stdout, stderr),
			versionCommand(stdout),
		},
	}
	root.Subcommands = append(root.Subcommands, flagsCommand(root, stdout))
	root.Exec = groupExec(&root, "triage")
	for _, c := range root.Subcommands {
		if c.FlagSet != nil {
			c.FlagSet.SetOutput(stderr)
		}
	}
	if err := root.Parse(withEnv(root, args, os.Getenv)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return explainFlagError(root, args, err)
	}
	stop, err := startCPUProfile(root, args)
	if err != nil {
		return err
	}
	// Deferred, so a SIGTERM (ctx cancelled, command returns) still writes
	// the profile.
	defer stop()
	return root.Run(ctx)
}

// startCPUProfile starts the Go CPU profile that the chosen subcommand's
// --cpu-profile (or TRIAGE_CPU_PROFILE) names, here rather than in each
// command so that every subcommand honours it; stop ends it.
func startCPUProfile(root *ffcli.Command, args []string) (stop func(), err error) {
	cmd, _ := findCommand(root, args)
	var path string
	if cmd.FlagSet != nil {
		if f := cmd.FlagSet.Lookup("cpu-profile"); f != nil {
			path = f.Value.String()
		}
	}
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpu-profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func versionCommand(stdout io.Writer) *ffcli.Command {
	return &ffcli.Command{
		Name:       "version",
		ShortUsage: "triage version",
		ShortHelp:  "print the version",
		Exec: func(context.Context, []string) error {
			_, err := fmt.Fprintln(stdout, "triage", version)
			return err
		},
	}
}

// splitList parses comma-separated flag values.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// findCommand is the subcommand args select (root when none) and the index
// of its name in args (-1 for root).
func findCommand(root *ffcli.Command, args []string) (*ffcli.Command, int) {
	cmd, at := root, -1
	for i, a := range args {
		if strings.HasPrefix(a, "-") {
			continue
		}
		var next *ffcli.Command
		for _, sc := range cmd.Subcommands {
			if sc.Name == a {
				next = sc
			}
		}
		if next == nil {
			break
		}
		cmd, at = next, i
	}
	return cmd, at
}
