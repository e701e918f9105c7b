// Package composetest checks docker-compose.yml and the images' Dockerfiles
// without Docker: the compose file is loaded by compose-go (the library
// docker compose itself uses), and every Triage setting in it is checked
// against the binary's own flag list (`triage flags`), so a renamed or
// misspelt flag fails here instead of at `docker compose up`.
package composetest

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// FlagDoc is one entry of `triage flags` (cmd/triage/flags.go).
type FlagDoc struct {
	Command string `json:"command"`
	Name    string `json:"name"`
	Env     string `json:"env"`
	Default string `json:"default"`
	Usage   string `json:"usage"`
}

// flagSet is every command's flags, by command ("run", "models promote").
type flagSet map[string]map[string]FlagDoc

func parseFlags(data []byte) (flagSet, error) {
	var docs []FlagDoc
	if err := json.Unmarshal(data, &docs); err != nil {
		return nil, fmt.Errorf("parse `triage flags`: %w", err)
	}
	fs := flagSet{}
	for _, d := range docs {
		if fs[d.Command] == nil {
			fs[d.Command] = map[string]FlagDoc{}
		}
		fs[d.Command][d.Name] = d
	}
	if len(fs["run"]) == 0 {
		return nil, fmt.Errorf("`triage flags` lists no flags of `triage run`")
	}
	return fs, nil
}

// envAliases are variables the binary reads besides TRIAGE_<FLAG>
// (cmd/triage/main.go envAliases): variable -> flag.
var envAliases = map[string]string{"TRIAGE_DATA_DIR": "datasets"}

// isBool tells a boolean flag, which takes no separate value: the flag
// package prints its default as "true" or "false".
func (d FlagDoc) isBool() bool { return d.Default == "true" || d.Default == "false" }

// invocation is a Triage container's command line and environment resolved
// against the binary's flags: the flag values it runs with, and the
// problems found on the way.
type invocation struct {
	command  string            // "run", "models list", ...
	values   map[string]string // flag -> value: environment, then arguments (the binary's precedence)
	problems []string
}

// resolveInvocation splits args (the container command after the image's
// `triage` entrypoint) into the subcommand and its flags, and checks every
// flag and every TRIAGE_* variable against that subcommand's flags.
func resolveInvocation(fs flagSet, args []string, env map[string]string) invocation {
	inv := invocation{values: map[string]string{}}
	// The longest leading run of words that names a command.
	n := 0
	for i := 1; i <= len(args); i++ {
		if strings.HasPrefix(args[i-1], "-") {
			break
		}
		if _, ok := fs[strings.Join(args[:i], " ")]; ok {
			n = i
		}
	}
	if n == 0 {
		inv.problems = append(inv.problems, fmt.Sprintf("command %q names no triage subcommand", args))
		return inv
	}
	inv.command = strings.Join(args[:n], " ")
	flags := fs[inv.command]
	byEnv := map[string]string{}
	for name, d := range flags {
		if d.Env != "" {
			byEnv[d.Env] = name
		}
	}
	for _, k := range sortedKeys(env) {
		if !strings.HasPrefix(k, "TRIAGE_") {
			continue
		}
		name, ok := byEnv[k]
		if !ok {
			if alias, isAlias := envAliases[k]; isAlias && flags[alias].Name != "" {
				name, ok = alias, true
			}
		}
		if !ok {
			inv.problems = append(inv.problems, fmt.Sprintf("environment %s sets no flag of `triage %s`", k, inv.command))
			continue
		}
		inv.values[name] = env[k]
	}
	rest := args[n:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			inv.problems = append(inv.problems, fmt.Sprintf("`triage %s`: unexpected argument %q", inv.command, a))
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		d, ok := flags[name]
		if !ok {
			inv.problems = append(inv.problems, fmt.Sprintf("`triage %s` has no flag --%s", inv.command, name))
			continue
		}
		switch {
		case hasValue:
		case d.isBool():
			value = "true"
		case i+1 < len(rest):
			i++
			value = rest[i]
		default:
			inv.problems = append(inv.problems, fmt.Sprintf("`triage %s`: --%s needs a value", inv.command, name))
		}
		inv.values[name] = value
	}
	return inv
}

// value is the flag's effective value: set in the service, else the image's
// environment (imageEnv), else the binary's default.
func (inv invocation) value(fs flagSet, imageEnv map[string]string, name string) string {
	if v, ok := inv.values[name]; ok {
		return v
	}
	d := fs[inv.command][name]
	if v, ok := imageEnv[d.Env]; ok && d.Env != "" {
		return v
	}
	return d.Default
}

// isTriage tells the services that run the Triage image.
func isTriage(s types.ServiceConfig) bool {
	if s.Build != nil && strings.HasPrefix(filepath.ToSlash(s.Build.Dockerfile), "deploy/docker/Dockerfile") {
		return true
	}
	return strings.HasPrefix(s.Image, "triage:")
}

// isJob tells a one-shot service (it runs to completion; nothing restarts it).
func isJob(s types.ServiceConfig) bool { return s.Restart == "no" }

// checkService checks one Triage service's command and environment against
// the binary, and returns its resolved invocation.
func checkService(fs flagSet, s types.ServiceConfig) invocation {
	if len(s.Entrypoint) > 0 {
		return invocation{problems: []string{"overrides the image's entrypoint (triage): flags cannot be checked"}}
	}
	env := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			env[k] = *v
		}
	}
	return resolveInvocation(fs, s.Command, env)
}

// roles is the --target value as a set ("all" expanded to what it runs).
func roles(target string) map[string]bool {
	out := map[string]bool{}
	for _, r := range strings.Split(target, ",") {
		r = strings.TrimSpace(r)
		if r == "all" {
			for _, a := range []string{"trainer", "consumer", "monitor", "gateway"} {
				out[a] = true
			}
			continue
		}
		if r != "" {
			out[r] = true
		}
	}
	return out
}

// listenPort parses a listen address, refusing one that a published port
// cannot reach (loopback inside the container).
func listenPort(addr string) (int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		return 0, fmt.Errorf("listens on %s: unreachable from outside the container (use 0.0.0.0)", host)
	}
	return strconv.Atoi(port)
}

// dockerfileEnv is the ENV of a Dockerfile's last stage (the image).
func dockerfileEnv(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	for _, inst := range dockerInstructions(string(data)) {
		switch strings.ToUpper(inst.op) {
		case "FROM":
			env = map[string]string{}
		case "ENV":
			for _, kv := range strings.Fields(inst.args) {
				if k, v, ok := strings.Cut(kv, "="); ok {
					env[k] = v
				}
			}
		}
	}
	return env, nil
}

type dockerInstruction struct{ op, args string }

// dockerInstructions splits a Dockerfile into instructions, joining
// continuation lines and dropping comments.
func dockerInstructions(text string) []dockerInstruction {
	var out []dockerInstruction
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		op, args, _ := strings.Cut(line, " ")
		out = append(out, dockerInstruction{op: op, args: strings.TrimSpace(args)})
	}
	for _, l := range strings.Split(text, "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") {
			continue
		}
		if strings.HasSuffix(t, "\\") {
			cur.WriteString(strings.TrimSuffix(t, "\\") + " ")
			continue
		}
		cur.WriteString(t)
		flush()
	}
	flush()
	return out
}

// hostPath maps a path inside a service's container to the host file a bind
// mount puts there ("" when no bind mount covers it).
func hostPath(s types.ServiceConfig, containerPath string) string {
	best, bestLen := "", -1
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		t := strings.TrimSuffix(v.Target, "/")
		if containerPath == t || strings.HasPrefix(containerPath, t+"/") {
			if len(t) > bestLen {
				best, bestLen = filepath.Join(v.Source, strings.TrimPrefix(containerPath, t)), len(t)
			}
		}
	}
	return best
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// buildTriage builds the binary from the repository root into dir.
func buildTriage(root, dir string) (string, error) {
	bin := filepath.Join(dir, "triage")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/triage")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/triage: %w\n%s", err, out)
	}
	return bin, nil
}
