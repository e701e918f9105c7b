package composetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v2"
)

var (
	repoRoot string
	flags    flagSet
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(out)) == "" {
			fmt.Fprintln(os.Stderr, "composetest: cannot find the module root:", err)
			return 1
		}
		repoRoot = filepath.Dir(strings.TrimSpace(string(out)))
		tmp, err := os.MkdirTemp("", "composetest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		bin, err := buildTriage(repoRoot, tmp)
		if err != nil {
			fmt.Fprintln(os.Stderr, "composetest:", err)
			return 1
		}
		data, err := exec.Command(bin, "flags").Output()
		if err != nil {
			fmt.Fprintln(os.Stderr, "composetest: triage flags:", err)
			return 1
		}
		if flags, err = parseFlags(data); err != nil {
			fmt.Fprintln(os.Stderr, "composetest:", err)
			return 1
		}
		return m.Run()
	}())
}

// load reads docker-compose.yml as `docker compose` would, with the given
// profiles ("*" = all) and an empty environment, so ${VAR:-default}
// interpolations take their defaults whatever the caller's shell holds.
func load(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(repoRoot, "docker-compose.yml")},
		cli.WithWorkingDirectory(repoRoot), cli.WithProfiles(profiles))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

// triageService is a Triage service with its resolved command line.
type triageService struct {
	name     string
	svc      types.ServiceConfig
	inv      invocation
	imageEnv map[string]string
}

func (ts triageService) value(name string) string { return ts.inv.value(flags, ts.imageEnv, name) }

func triageServices(t *testing.T, p *types.Project) []triageService {
	t.Helper()
	var out []triageService
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		if !isTriage(s) {
			continue
		}
		if s.Build == nil {
			t.Errorf("%s: runs the Triage image without a build section (nothing builds %s)", name, s.Image)
			continue
		}
		env, err := dockerfileEnv(filepath.Join(s.Build.Context, s.Build.Dockerfile))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, triageService{name: name, svc: s, inv: checkService(flags, s), imageEnv: env})
	}
	if len(out) < 5 {
		t.Fatalf("found %d Triage services, want trainer, two consumers, monitor, gateway", len(out))
	}
	return out
}

func TestTriageFlagsAndEnvironmentExist(t *testing.T) {
	for _, ts := range triageServices(t, load(t, "*")) {
		for _, p := range ts.inv.problems {
			t.Errorf("%s: %s", ts.name, p)
		}
		if ts.inv.command != "run" {
			t.Errorf("%s: runs `triage %s`, want `triage run --target ROLE`", ts.name, ts.inv.command)
		}
		if _, ok := ts.inv.values["target"]; !ok {
			t.Errorf("%s: no --target: it would run every role", ts.name)
		}
	}
	// The images' ENV: every TRIAGE_* variable must set a flag of some command
	// (a variable naming no flag of the command being run is ignored, so
	// image-wide settings are fine as long as they exist somewhere).
	known := map[string]bool{}
	for _, byName := range flags {
		for _, d := range byName {
			known[d.Env] = true
		}
	}
	for _, df := range dockerfiles(t) {
		env, err := dockerfileEnv(df)
		if err != nil {
			t.Fatal(err)
		}
		for k := range env {
			if strings.HasPrefix(k, "TRIAGE_") && !known[k] {
				t.Errorf("%s: ENV %s sets no flag of any triage command", rel(df), k)
			}
		}
	}
}

// The checker must be able to fail: an unknown flag, a flag of another
// command, a value-less flag, an unknown TRIAGE_* variable and an unknown
// subcommand are each reported.
func TestFlagCheckCatchesMistakes(t *testing.T) {
	p := load(t, "*")
	s := p.Services["consumer-1"]
	if inv := checkService(flags, s); len(inv.problems) != 0 {
		t.Fatalf("consumer-1 as written: %v", inv.problems)
	}
	if _, ok := flags["train"]["hash-bits"]; !ok {
		t.Fatal("`triage train` has no --hash-bits: pick another flag that `run` lacks")
	}
	if _, ok := flags["run"]["hash-bits"]; ok {
		t.Fatal("`triage run` has --hash-bits: pick another flag that `run` lacks")
	}
	bad := s
	bad.Command = append(slices.Clone(s.Command), "--no-such-flag", "x", "--hash-bits=18", "--instance-id")
	bad.Environment = types.MappingWithEquals{}
	for k, v := range s.Environment {
		bad.Environment[k] = v
	}
	typo := "kafka:9092"
	bad.Environment["TRIAGE_BROKER"] = &typo
	inv := checkService(flags, bad)
	for _, want := range []string{"no flag --no-such-flag", "no flag --hash-bits", "--instance-id needs a value", "TRIAGE_BROKER sets no flag"} {
		if !slices.ContainsFunc(inv.problems, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("problem %q not reported; got %q", want, inv.problems)
		}
	}
	if inv := resolveInvocation(flags, []string{"runn", "--target", "consumer"}, nil); len(inv.problems) == 0 {
		t.Error("unknown subcommand `runn` not reported")
	}
	// The alias the binary reads is accepted, for the command that has the flag.
	if inv := resolveInvocation(flags, []string{"run"}, map[string]string{"TRIAGE_DATA_DIR": "/d"}); len(inv.problems) != 0 || inv.values["datasets"] != "/d" {
		t.Errorf("TRIAGE_DATA_DIR for run: %v %v", inv.problems, inv.values)
	}
}

func TestHealthchecksAndDependencies(t *testing.T) {
	for _, profiles := range [][]string{{"*"}, nil} {
		p := load(t, profiles...)
		for _, name := range sortedKeys(p.Services) {
			s := p.Services[name]
			hasCheck := s.HealthCheck != nil && !s.HealthCheck.Disable && len(s.HealthCheck.Test) > 0 && s.HealthCheck.Test[0] != "NONE"
			if !isJob(s) && !hasCheck {
				t.Errorf("%s: long-running service without a healthcheck", name)
			}
			if isJob(s) && len(s.DependsOn) == 0 {
				t.Errorf("%s: a one-shot job that waits for nothing", name)
			}
			for _, dep := range sortedKeys(s.DependsOn) {
				d := s.DependsOn[dep]
				target, ok := p.Services[dep]
				if !ok {
					t.Errorf("%s (profiles %v): depends on %s, which is not in the project", name, profiles, dep)
					continue
				}
				switch d.Condition {
				case types.ServiceConditionHealthy:
					if target.HealthCheck == nil || target.HealthCheck.Disable {
						t.Errorf("%s: waits for %s to be healthy, but %s has no healthcheck", name, dep, dep)
					}
				case types.ServiceConditionCompletedSuccessfully:
					if !isJob(target) {
						t.Errorf("%s: waits for %s to complete, but %s is long-running (restart %q)", name, dep, dep, target.Restart)
					}
				default:
					t.Errorf("%s: depends on %s with condition %q; want service_healthy or service_completed_successfully", name, dep, d.Condition)
				}
			}
		}
	}
	// Triage's own checks probe readiness with the image's probe.
	for _, ts := range triageServices(t, load(t, "*")) {
		hc := ts.svc.HealthCheck
		if hc == nil || !slices.Contains(hc.Test, "/usr/local/bin/triage-healthcheck") {
			t.Errorf("%s: healthcheck %v does not run /usr/local/bin/triage-healthcheck", ts.name, hc)
		}
	}
}

func TestPublishedPortsMatchListeners(t *testing.T) {
	p := load(t, "*")
	hostPorts := map[string]string{}
	for _, name := range sortedKeys(p.Services) {
		for _, port := range p.Services[name].Ports {
			if other, dup := hostPorts[port.Published]; dup && port.Published != "" {
				t.Errorf("host port %s published by %s and %s", port.Published, other, name)
			}
			hostPorts[port.Published] = name
		}
	}
	for _, ts := range triageServices(t, p) {
		listeners := map[int]string{}
		metrics, err := listenPort(ts.value("metrics-addr"))
		if err != nil {
			t.Errorf("%s: --metrics-addr %q: %v", ts.name, ts.value("metrics-addr"), err)
		} else {
			listeners[metrics] = "--metrics-addr"
		}
		if roles(ts.value("target"))["gateway"] {
			http, err := listenPort(ts.value("http-addr"))
			if err != nil {
				t.Errorf("%s: --http-addr %q: %v", ts.name, ts.value("http-addr"), err)
			} else {
				listeners[http] = "--http-addr"
				if !slices.ContainsFunc(ts.svc.Ports, func(pc types.ServicePortConfig) bool { return int(pc.Target) == http }) {
					t.Errorf("%s: the REST API listens on %d, which is not published", ts.name, http)
				}
			}
		}
		for _, pc := range ts.svc.Ports {
			if _, ok := listeners[int(pc.Target)]; !ok {
				t.Errorf("%s: publishes container port %d, where nothing listens (listeners %v)", ts.name, pc.Target, listeners)
			}
		}
	}
}

// promConfig is the part of a Prometheus configuration checked here.
type promConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", rel(path), err)
	}
}

func TestPrometheusScrapesEveryRole(t *testing.T) {
	p := load(t, "*")
	prom, ok := p.Services["prometheus"]
	if !ok {
		t.Fatal("no prometheus service")
	}
	configPath := "/etc/prometheus/prometheus.yml"
	for _, a := range prom.Command {
		if v, ok := strings.CutPrefix(a, "--config.file="); ok {
			configPath = v
		}
	}
	hostConfig := hostPath(prom, configPath)
	if hostConfig == "" {
		t.Fatalf("prometheus: nothing mounted at %s", configPath)
	}
	var cfg promConfig
	readYAML(t, hostConfig, &cfg)

	// Rule files: each resolves through a mount to a file of the repository,
	// and every rule file of monitoring/prometheus/rules is loaded.
	loaded := map[string]bool{}
	for _, rf := range cfg.RuleFiles {
		if !filepath.IsAbs(rf) {
			rf = filepath.Join(filepath.Dir(configPath), rf)
		}
		h := hostPath(prom, rf)
		if h == "" || !isFile(h) {
			t.Errorf("prometheus: rule file %s is not a mounted file (host %q)", rf, h)
			continue
		}
		loaded[h] = true
	}
	rules, _ := filepath.Glob(filepath.Join(repoRoot, "monitoring/prometheus/rules/*.yml"))
	if len(rules) == 0 {
		t.Fatal("no rule files in monitoring/prometheus/rules")
	}
	for _, r := range rules {
		if !loaded[r] {
			t.Errorf("prometheus: %s is not in rule_files", rel(r))
		}
	}

	// Targets: service:port of a Triage service whose metrics listener is on
	// that port; every Triage service is scraped once.
	byName := map[string]triageService{}
	for _, ts := range triageServices(t, p) {
		byName[ts.name] = ts
	}
	scraped := map[string]string{}
	var jobs []string
	for _, sc := range cfg.ScrapeConfigs {
		jobs = append(jobs, sc.JobName)
		var targets []string
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
		for _, dns := range sc.DNSSDConfigs {
			for _, n := range dns.Names {
				targets = append(targets, fmt.Sprintf("%s:%d", n, dns.Port))
			}
		}
		for _, target := range targets {
			host, port, _ := strings.Cut(target, ":")
			ts, ok := byName[host]
			if !ok {
				t.Errorf("job %s: target %s is no Triage service of the compose file", sc.JobName, target)
				continue
			}
			if job, dup := scraped[host]; dup {
				t.Errorf("%s scraped by jobs %s and %s: its series would count twice", host, job, sc.JobName)
			}
			scraped[host] = sc.JobName
			want, err := listenPort(ts.value("metrics-addr"))
			if got, _ := strconv.Atoi(port); err != nil || got != want {
				t.Errorf("job %s: target %s, but %s's --metrics-addr is %q", sc.JobName, target, host, ts.value("metrics-addr"))
			}
		}
	}
	for name := range byName {
		if _, ok := scraped[name]; !ok {
			t.Errorf("%s: not scraped by Prometheus", name)
		}
	}
	// Same job names as the repository's reference configuration: the rules and
	// dashboards were written against them.
	var ref promConfig
	readYAML(t, filepath.Join(repoRoot, "monitoring/prometheus/prometheus.yml"), &ref)
	var refJobs []string
	for _, sc := range ref.ScrapeConfigs {
		refJobs = append(refJobs, sc.JobName)
	}
	slices.Sort(jobs)
	slices.Sort(refJobs)
	if !slices.Equal(jobs, refJobs) {
		t.Errorf("scrape jobs %v, monitoring/prometheus/prometheus.yml has %v", jobs, refJobs)
	}
}

func TestVolumesAndSharedRegistry(t *testing.T) {
	p := load(t, "*")
	used := map[string]bool{}
	for _, name := range sortedKeys(p.Services) {
		for _, v := range p.Services[name].Volumes {
			if v.Type != types.VolumeTypeVolume {
				continue
			}
			used[v.Source] = true
			if _, ok := p.Volumes[v.Source]; !ok {
				t.Errorf("%s: named volume %q is not declared under volumes:", name, v.Source)
			}
		}
	}
	for name := range p.Volumes {
		if !used[name] {
			t.Errorf("volume %q is declared but no service mounts it", name)
		}
	}

	// Every Triage role reads the one registry: the same named volume, mounted
	// at the same path, which is the path --registry names.
	var volume, path string
	for _, ts := range triageServices(t, p) {
		reg := ts.value("registry")
		var mount *types.ServiceVolumeConfig
		for i, v := range ts.svc.Volumes {
			if v.Target == reg {
				mount = &ts.svc.Volumes[i]
			}
		}
		switch {
		case mount == nil:
			t.Errorf("%s: --registry %s is not a mounted volume (each container would have its own registry)", ts.name, reg)
		case mount.Type != types.VolumeTypeVolume:
			t.Errorf("%s: registry mount is a %s, want the shared named volume", ts.name, mount.Type)
		case volume == "":
			volume, path = mount.Source, mount.Target
		case mount.Source != volume || mount.Target != path:
			t.Errorf("%s: registry %s at %s; others share %s at %s", ts.name, mount.Source, mount.Target, volume, path)
		}
		if mount != nil && mount.ReadOnly {
			t.Errorf("%s: registry mounted read-only (load reports and alias moves write to it)", ts.name)
		}
	}
	// Training uploads go from the gateway to the trainer through one folder.
	var uploads []string
	for _, ts := range triageServices(t, p) {
		r := roles(ts.value("target"))
		if !r["gateway"] && !r["trainer"] {
			continue
		}
		dir := ts.value("uploads-dir")
		found := false
		for _, v := range ts.svc.Volumes {
			if v.Target == dir && v.Type == types.VolumeTypeVolume {
				uploads, found = append(uploads, v.Source), true
			}
		}
		if !found {
			t.Errorf("%s: --uploads-dir %q is not a named volume shared by gateway and trainer", ts.name, dir)
		}
	}
	if u := slices.Compact(slices.Sorted(slices.Values(uploads))); len(u) > 1 {
		t.Errorf("gateway and trainer mount different upload volumes: %v", uploads)
	}
}

func TestMountedFilesExist(t *testing.T) {
	p := load(t, "*")
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			inRepo := strings.HasPrefix(v.Source, repoRoot+string(filepath.Separator))
			_, err := os.Stat(v.Source)
			switch {
			case inRepo && err != nil:
				t.Errorf("%s: mounts %s, which is not in the repository", name, rel(v.Source))
			case !inRepo && err != nil:
				// Host data outside the repository (the training data folder):
				// its location is the operator's, so only note it.
				t.Logf("%s: host folder %s does not exist here (%v)", name, v.Source, err)
			case inRepo && !v.ReadOnly:
				t.Errorf("%s: repository file %s mounted read-write", name, rel(v.Source))
			}
		}
		// Scripts a service runs from a mount must be there.
		for _, a := range append(slices.Clone(s.Entrypoint), s.Command...) {
			if !strings.HasPrefix(a, "/") {
				continue
			}
			if h := hostPath(s, a); h != "" && !isFile(h) {
				t.Errorf("%s: runs %s, mounted from %s, which does not exist", name, a, rel(h))
			}
		}
	}

	// Grafana: the provisioned data source has the uid the dashboards use, and
	// the dashboard provider reads the folder the dashboards are mounted at.
	g := p.Services["grafana"]
	var ds, refDS struct {
		Datasources []struct {
			UID string `yaml:"uid"`
			URL string `yaml:"url"`
		} `yaml:"datasources"`
	}
	dsDir := hostPath(g, "/etc/grafana/provisioning/datasources")
	files, _ := filepath.Glob(filepath.Join(dsDir, "*.yml"))
	if len(files) != 1 {
		t.Fatalf("grafana: want one data source file mounted, found %v", files)
	}
	readYAML(t, files[0], &ds)
	readYAML(t, filepath.Join(repoRoot, "monitoring/grafana/provisioning/datasources/prometheus.yml"), &refDS)
	if len(ds.Datasources) != 1 || len(refDS.Datasources) != 1 || ds.Datasources[0].UID != refDS.Datasources[0].UID {
		t.Errorf("grafana data source uid: compose %v, monitoring %v", ds.Datasources, refDS.Datasources)
	} else if u := ds.Datasources[0].URL; !strings.Contains(u, "//prometheus:") {
		t.Errorf("grafana data source url %s is not the prometheus service", u)
	}
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	provDir := hostPath(g, "/etc/grafana/provisioning/dashboards")
	provFiles, _ := filepath.Glob(filepath.Join(provDir, "*.yml"))
	if len(provFiles) == 0 {
		t.Fatal("grafana: no dashboard provider mounted")
	}
	for _, f := range provFiles {
		readYAML(t, f, &prov)
		for _, pr := range prov.Providers {
			dir := hostPath(g, pr.Options.Path)
			dashboards, _ := filepath.Glob(filepath.Join(dir, "*.json"))
			if len(dashboards) == 0 {
				t.Errorf("grafana: provider path %s holds no dashboards (host %q)", pr.Options.Path, dir)
			}
		}
	}

	// Kibana: the import job mounts setup.sh with every saved-object file.
	k := p.Services["kibana-setup"]
	setup := hostPath(k, "/setup/setup.sh")
	if !isFile(setup) {
		t.Fatalf("kibana-setup: setup.sh not mounted (%q)", setup)
	}
	ndjson, _ := filepath.Glob(filepath.Join(filepath.Dir(setup), "*.ndjson"))
	if len(ndjson) < 3 {
		t.Errorf("kibana-setup: %d saved-object files next to setup.sh, want index patterns and two dashboards", len(ndjson))
	}
}

// The topic job creates every topic the roles use with their default names,
// and the compacted ones compacted.
func TestKafkaInitCreatesTheTopics(t *testing.T) {
	p := load(t, "*")
	k := p.Services["kafka-init"]
	var script string
	for _, a := range append(slices.Clone(k.Entrypoint), k.Command...) {
		if h := hostPath(k, a); h != "" && strings.HasSuffix(h, ".sh") {
			script = h
		}
	}
	if script == "" {
		t.Fatal("kafka-init runs no mounted script")
	}
	data, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	specs := map[string]string{} // topic -> rest of its spec line
	for _, m := range regexp.MustCompile(`(?m)^\s*"(triage\.[a-z0-9.-]+) (.*)"\s*$`).FindAllStringSubmatch(string(data), -1) {
		specs[m[1]] = m[2]
	}
	run := flags["run"]
	for name, d := range run {
		if strings.HasSuffix(name, "-topic") && d.Default != "" {
			if _, ok := specs[d.Default]; !ok {
				t.Errorf("kafka-init does not create %s (--%s)", d.Default, name)
			}
		}
	}
	for _, topic := range []string{"triage.support-queries", "triage.reviews"} {
		if _, ok := specs[topic]; !ok {
			t.Errorf("kafka-init does not create input topic %s", topic)
		}
	}
	for _, topic := range []string{"triage.feedback", "triage.model-updates", "triage.train-status"} {
		if !strings.Contains(specs[topic], "cleanup.policy=compact") {
			t.Errorf("kafka-init: %s is not created compacted (%q)", topic, specs[topic])
		}
	}
}

func TestGPUProfile(t *testing.T) {
	if _, ok := load(t).Services["consumer-gpu"]; ok {
		t.Error("consumer-gpu runs without --profile gpu")
	}
	p := load(t, "gpu")
	s, ok := p.Services["consumer-gpu"]
	if !ok {
		t.Fatal("no consumer-gpu service in profile gpu")
	}
	if s.Build == nil || filepath.Base(s.Build.Dockerfile) != "Dockerfile.cuda" {
		t.Errorf("consumer-gpu: built from %v, want deploy/docker/Dockerfile.cuda", s.Build)
	}
	var gpu bool
	if s.Deploy != nil && s.Deploy.Resources.Reservations != nil {
		for _, d := range s.Deploy.Resources.Reservations.Devices {
			gpu = gpu || d.Driver == "nvidia" && slices.Contains(d.Capabilities, "gpu")
		}
	}
	if !gpu {
		t.Error("consumer-gpu: no nvidia gpu device reservation")
	}
	for _, ts := range triageServices(t, p) {
		if ts.name != "consumer-gpu" {
			continue
		}
		if v := ts.value("provider"); v != "cuda" {
			t.Errorf("consumer-gpu: --provider %q, want cuda", v)
		}
		if ts.value("instance-id") == "" {
			t.Error("consumer-gpu: no --instance-id")
		}
	}
	// Consumers share the group with distinct instance ids.
	ids := map[string]string{}
	for _, ts := range triageServices(t, p) {
		if !roles(ts.value("target"))["consumer"] {
			continue
		}
		id := ts.value("instance-id")
		if id == "" {
			t.Errorf("%s: consumer without --instance-id", ts.name)
		} else if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share --instance-id %s (they would fence each other)", ts.name, other, id)
		}
		ids[id] = ts.name
	}
	if len(ids) < 3 {
		t.Errorf("consumers %v: want two CPU consumers and the GPU one", ids)
	}
}

func dockerfiles(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(repoRoot, "deploy/docker/Dockerfile*"))
	if len(files) != 3 {
		t.Fatalf("want Dockerfile, Dockerfile.cuda, Dockerfile.train; found %v", files)
	}
	return files
}

// The images: sources they copy exist and are not excluded from the build
// context; ONNX Runtime is the release scripts/fetch-onnxruntime.sh pins;
// they run as non-root with a health check and triage as entrypoint.
func TestDockerfiles(t *testing.T) {
	fetch, err := os.ReadFile(filepath.Join(repoRoot, "scripts/fetch-onnxruntime.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ORT_VERSION="([0-9.]+)"`).FindSubmatch(fetch)
	if m == nil {
		t.Fatal("no ORT_VERSION in scripts/fetch-onnxruntime.sh")
	}
	ortVersion := string(m[1])
	ignored := dockerignore(t)
	for _, df := range dockerfiles(t) {
		data, err := os.ReadFile(df)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		var user, entrypoint string
		var healthcheck bool
		for _, inst := range dockerInstructions(text) {
			switch strings.ToUpper(inst.op) {
			case "FROM":
				user, entrypoint, healthcheck = "", "", false
				if ref, _, _ := strings.Cut(inst.args, " "); !strings.Contains(ref, ":") && !strings.Contains(ref, "@") {
					t.Errorf("%s: FROM %s is not pinned to a tag or digest", rel(df), ref)
				}
			case "USER":
				user = inst.args
			case "ENTRYPOINT":
				entrypoint = inst.args
			case "HEALTHCHECK":
				healthcheck = true
			case "COPY", "ADD":
				if strings.Contains(inst.args, "--from=") {
					continue
				}
				parts := strings.Fields(inst.args)
				for _, src := range parts[:len(parts)-1] {
					if strings.HasPrefix(src, "--") {
						continue
					}
					if src == "." {
						continue
					}
					if _, err := os.Stat(filepath.Join(repoRoot, src)); err != nil {
						t.Errorf("%s: COPY %s: not in the repository", rel(df), src)
					}
					if ignored(src) {
						t.Errorf("%s: COPY %s: excluded by .dockerignore", rel(df), src)
					}
				}
			}
		}
		if user == "" || user == "root" || strings.HasPrefix(user, "0") {
			t.Errorf("%s: the image runs as %q, want a non-root user", rel(df), user)
		}
		if !healthcheck {
			t.Errorf("%s: no HEALTHCHECK", rel(df))
		}
		if !strings.Contains(entrypoint, "/triage\"") {
			t.Errorf("%s: ENTRYPOINT %s is not triage", rel(df), entrypoint)
		}
		env, _ := dockerfileEnv(df)
		if env["ONNXRUNTIME_LIB"] == "" {
			t.Errorf("%s: ONNXRUNTIME_LIB not set", rel(df))
		}
		for _, k := range []string{"TRIAGE_HTTP_ADDR", "TRIAGE_METRICS_ADDR"} {
			if _, err := listenPort(env[k]); err != nil {
				t.Errorf("%s: %s=%q: %v", rel(df), k, env[k], err)
			}
		}
		switch filepath.Base(df) {
		case "Dockerfile.cuda":
			req := readText(t, filepath.Join(repoRoot, "deploy/docker/requirements-cuda.txt"))
			if !strings.Contains(req, "onnxruntime-gpu=="+ortVersion+" ") || !strings.Contains(text, "libonnxruntime.so."+ortVersion) {
				t.Errorf("%s: ONNX Runtime GPU is not %s (scripts/fetch-onnxruntime.sh)", rel(df), ortVersion)
			}
		default:
			// The CPU library comes from the repository's fetch script, whose
			// pinned SHA-256 it verifies: one checksum for every consumer.
			if !strings.Contains(text, "scripts/fetch-onnxruntime.sh") || !strings.Contains(text, "/ort/"+ortVersion+"/libonnxruntime.so.1") {
				t.Errorf("%s: ONNX Runtime not fetched by scripts/fetch-onnxruntime.sh (release %s)", rel(df), ortVersion)
			}
		}
		if filepath.Base(df) == "Dockerfile.train" {
			req := readText(t, filepath.Join(repoRoot, "deploy/docker/requirements-train.txt"))
			if !strings.Contains(req, "onnxruntime=="+ortVersion+" ") {
				t.Errorf("requirements-train.txt: onnxruntime is not %s", ortVersion)
			}
		}
	}
	for _, req := range []string{"requirements-cuda.txt", "requirements-train.txt"} {
		for _, line := range strings.Split(readText(t, filepath.Join(repoRoot, "deploy/docker", req)), "\n") {
			if line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(strings.TrimSpace(line), "--hash=sha256:") &&
				!regexp.MustCompile(`^[A-Za-z0-9_.-]+==[^ ]+ \\$`).MatchString(line) {
				t.Errorf("%s: %q is not an exact pin followed by its hash", req, line)
			}
		}
	}
}

// dockerignore returns a matcher for the repository's .dockerignore
// (top-level entries and plain globs; enough for the paths the images copy).
func dockerignore(t *testing.T) func(string) bool {
	var patterns []string
	for _, line := range strings.Split(readText(t, filepath.Join(repoRoot, ".dockerignore")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		patterns = append(patterns, strings.TrimPrefix(strings.TrimPrefix(line, "**/"), "/"))
	}
	return func(path string) bool {
		for _, pat := range patterns {
			for p := path; p != "." && p != "/" && p != ""; p = filepath.Dir(p) {
				if ok, _ := filepath.Match(pat, p); ok {
					return true
				}
			}
		}
		return false
	}
}

func readText(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

func rel(path string) string {
	if r, err := filepath.Rel(repoRoot, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}
