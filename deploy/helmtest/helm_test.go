//go:build helm

package helmtest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v2"
)

// The chart and its GPU values, relative to this package.
var (
	chartDir  = filepath.Join("..", "helm", "triage")
	gpuValues = filepath.Join("..", "helm", "values-gpu.yaml")
)

func requireEnv(t *testing.T, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		t.Fatalf("%s is not set: it must name %s. Run the chart checks with scripts/check-helm.sh, which builds it and sets %s", name, what, name)
	}
	if _, err := os.Stat(v); err != nil {
		t.Fatalf("%s=%s: %v", name, v, err)
	}
	return v
}

// runFlags is `triage run`'s flags, from `$TRIAGE_BIN flags`.
func runFlags(t *testing.T) Flags {
	t.Helper()
	bin := requireEnv(t, "TRIAGE_BIN", "a built triage binary (go build -o /tmp/triage ./cmd/triage)")
	out, err := exec.Command(bin, "flags").Output()
	if err != nil {
		t.Fatalf("%s flags: %v", bin, err)
	}
	var all []Flag
	if err := json.Unmarshal(out, &all); err != nil {
		t.Fatalf("triage flags: not the JSON list expected: %v", err)
	}
	f := CommandFlags(all, "run")
	for _, name := range []string{"target", "metrics-addr", "http-addr", "group", "brokers", "route", "registry", "provider", "instance-id", "api-keys-file"} {
		if _, ok := f.ByName[name]; !ok {
			t.Fatalf("triage flags: run has no --%s; the checks below rely on it", name)
		}
	}
	return f
}

// render is `helm template` of the chart with args, parsed.
func render(t *testing.T, args ...string) *Manifests {
	t.Helper()
	helm := requireEnv(t, "HELM_BIN", "the helm binary (scripts/check-helm.sh builds helm v3.22.0 into .cache/bin)")
	cmd := exec.Command(helm, append([]string{"template", "triage", chartDir, "--namespace", "triage", "--kube-version", "1.30.0"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	m, err := Parse(out)
	if err != nil {
		t.Fatalf("helm template %v: %v", args, err)
	}
	return m
}

// chartValues reads the chart's default values.
func chartValues(t *testing.T) (partitions, maxReplicas int) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Partitions int `yaml:"partitions"`
		KEDA       struct {
			MaxReplicas int `yaml:"maxReplicas"`
		} `yaml:"keda"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if v.Partitions <= 0 || v.KEDA.MaxReplicas <= 0 {
		t.Fatalf("values.yaml: partitions %d, keda.maxReplicas %d: want both positive", v.Partitions, v.KEDA.MaxReplicas)
	}
	return v.Partitions, v.KEDA.MaxReplicas
}

func expectClean(t *testing.T, m *Manifests, f Flags, want Expect) {
	t.Helper()
	for _, err := range Check(m, f, want) {
		t.Error(err)
	}
}

func maxReplicas(t *testing.T, m *Manifests) int {
	t.Helper()
	if len(m.ScaledObjects) != 1 {
		t.Fatalf("want 1 ScaledObject, got %d", len(m.ScaledObjects))
	}
	so := m.ScaledObjects[0]
	if so.Spec.MaxReplicaCount == nil {
		t.Fatal("ScaledObject without maxReplicaCount")
	}
	return *so.Spec.MaxReplicaCount
}

func TestDefaultValues(t *testing.T) {
	f := runFlags(t)
	partitions, maxRep := chartValues(t)
	m := render(t)
	expectClean(t, m, f, Expect{Partitions: partitions})

	for kind, n := range map[string]int{"Deployment": 4, "ConfigMap": 1, "Secret": 1, "PersistentVolumeClaim": 1, "PodDisruptionBudget": 4, "ScaledObject": 1, "Service": 5} {
		if m.Kinds[kind] != n {
			t.Errorf("%s: %d rendered, want %d", kind, m.Kinds[kind], n)
		}
	}
	if got, want := maxReplicas(t, m), min(partitions, maxRep); got != want {
		t.Errorf("ScaledObject maxReplicaCount %d, want min(keda.maxReplicas %d, partitions %d) = %d", got, maxRep, partitions, want)
	}
	so := m.ScaledObjects[0]
	if len(so.Spec.Triggers) != 2 {
		t.Errorf("want one kafka trigger per input topic (2), got %d", len(so.Spec.Triggers))
	}
	for _, d := range m.Deployments {
		c := d.Spec.Template.Spec.Containers[0]
		if _, ok := c.Resources.Limits["nvidia.com/gpu"]; ok {
			t.Errorf("Deployment %s asks for a GPU with default values", d.Metadata.Name)
		}
		if strings.HasSuffix(c.Image, "-cuda") {
			t.Errorf("Deployment %s runs the CUDA image with default values", d.Metadata.Name)
		}
	}
}

func TestKEDAReplicasCappedAtPartitions(t *testing.T) {
	f := runFlags(t)
	for _, tc := range []struct {
		partitions, maxReplicas, want int
	}{
		{3, 50, 3},
		{24, 12, 12},
		{8, 8, 8},
	} {
		m := render(t, "--set", "partitions="+itoa(tc.partitions), "--set", "keda.maxReplicas="+itoa(tc.maxReplicas))
		expectClean(t, m, f, Expect{Partitions: tc.partitions})
		if got := maxReplicas(t, m); got != tc.want {
			t.Errorf("partitions %d, keda.maxReplicas %d: maxReplicaCount %d, want %d", tc.partitions, tc.maxReplicas, got, tc.want)
		}
	}
}

func TestKEDAFollowsConsumerSettings(t *testing.T) {
	f := runFlags(t)
	m := render(t, "--set", "consumer.group=fraud-consumers", "--set", "config.brokers=k1:9092\\,k2:9092",
		"--set-json", `routes=[{"topic":"fraud.in","model":"fraud"}]`)
	expectClean(t, m, f, Expect{Partitions: 6})
	tr := m.ScaledObjects[0].Spec.Triggers
	if len(tr) != 1 || tr[0].Metadata["consumerGroup"] != "fraud-consumers" || tr[0].Metadata["topic"] != "fraud.in" || tr[0].Metadata["bootstrapServers"] != "k1:9092,k2:9092" {
		t.Errorf("triggers %+v: want one on fraud.in for group fraud-consumers at k1:9092,k2:9092", tr)
	}
}

func TestKEDADisabled(t *testing.T) {
	f := runFlags(t)
	m := render(t, "--set", "keda.enabled=false")
	expectClean(t, m, f, Expect{})
	if len(m.ScaledObjects) != 0 {
		t.Errorf("keda.enabled=false still renders %d ScaledObject(s)", len(m.ScaledObjects))
	}
	for _, d := range m.Deployments {
		if d.Metadata.Labels["app.kubernetes.io/component"] == "consumer" && (d.Spec.Replicas == nil || *d.Spec.Replicas != 2) {
			t.Errorf("without KEDA the consumer Deployment must set replicas (consumer.replicas = 2), got %v", d.Spec.Replicas)
		}
	}
}

func TestGPUValues(t *testing.T) {
	f := runFlags(t)
	partitions, _ := chartValues(t)
	m := render(t, "-f", gpuValues)
	expectClean(t, m, f, Expect{Partitions: partitions, GPURoles: []string{"consumer", "gateway"}})
	for _, d := range m.Deployments {
		role := d.Metadata.Labels["app.kubernetes.io/component"]
		c := d.Spec.Template.Spec.Containers[0]
		_, gpu := c.Resources.Limits["nvidia.com/gpu"]
		if (role == "trainer" || role == "monitor") && gpu {
			t.Errorf("%s asks for a GPU; only consumer and gateway infer", role)
		}
	}
}

// The checks must catch what they are for: each case breaks the chart one
// way through values and expects the error that names it.
func TestChecksCatchMistakes(t *testing.T) {
	f := runFlags(t)
	for _, tc := range []struct {
		name   string
		args   []string
		expect Expect
		want   string
	}{
		{"unknown flag in args", []string{"--set", "consumer.extraArgs={--no-such-flag=1}"}, Expect{}, "has no flag --no-such-flag"},
		{"unknown flag with a separate value", []string{"--set", "gateway.extraArgs={--rate-limit,5}"}, Expect{}, "has no flag --rate-limit"},
		{"unknown TRIAGE_ variable in the ConfigMap", []string{"--set", "config.extra.TRIAGE_NO_SUCH_SETTING=x"}, Expect{}, "TRIAGE_NO_SUCH_SETTING, which is no `triage run` flag's variable"},
		{"unknown TRIAGE_ variable in a container", []string{"--set", "monitor.env.TRIAGE_WINDOW=5m"}, Expect{}, "TRIAGE_WINDOW, which is no"},
		{"consumer group differs from KEDA's", []string{"--set", "consumer.env.TRIAGE_GROUP=other"}, Expect{}, `consumerGroup "triage-consumer", but the consumers' --group is "other"`},
		{"metrics listener off its container port", []string{"--set", "consumer.env.TRIAGE_METRICS_ADDR=0.0.0.0:9999"}, Expect{}, `--metrics-addr "0.0.0.0:9999" but containerPort "metrics" is 9464`},
		{"listener on loopback", []string{"--set", "gateway.env.TRIAGE_HTTP_ADDR=127.0.0.1:8080"}, Expect{}, "unreachable from other pods"},
		{"more replicas than partitions", []string{"--set", "partitions=24"}, Expect{Partitions: 6}, "maxReplicaCount 12 > 6 partitions"},
		{"GPU role without a GPU", nil, Expect{GPURoles: []string{"consumer"}}, "limits nvidia.com/gpu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := Check(render(t, tc.args...), f, tc.expect)
			var msgs []string
			for _, err := range errs {
				msgs = append(msgs, err.Error())
			}
			if !strings.Contains(strings.Join(msgs, "\n"), tc.want) {
				t.Errorf("want an error containing %q, got %d error(s):\n%s", tc.want, len(errs), strings.Join(msgs, "\n"))
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
