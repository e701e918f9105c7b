package helmtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v2"
)

// Flag is one entry of `triage flags` (JSON).
type Flag struct {
	Command string `json:"command"`
	Name    string `json:"name"`
	Env     string `json:"env"`
	Default string `json:"default"`
	Usage   string `json:"usage"`
}

// Flags indexes one command's flags by name and by environment variable.
type Flags struct {
	ByName map[string]Flag
	ByEnv  map[string]Flag
}

// CommandFlags picks command's flags out of the `triage flags` list.
func CommandFlags(all []Flag, command string) Flags {
	f := Flags{ByName: map[string]Flag{}, ByEnv: map[string]Flag{}}
	for _, fl := range all {
		if fl.Command != command {
			continue
		}
		f.ByName[fl.Name] = fl
		if fl.Env != "" {
			f.ByEnv[fl.Env] = fl
		}
	}
	return f
}

// The parts of the rendered objects the checks read.

type meta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
	raw        []byte
}

type envVar struct {
	Name      string `yaml:"name"`
	Value     string `yaml:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
		SecretKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"secretKeyRef"`
		ConfigMapKeyRef *struct {
			Name string `yaml:"name"`
			Key  string `yaml:"key"`
		} `yaml:"configMapKeyRef"`
	} `yaml:"valueFrom"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"` // a name or a number
	} `yaml:"httpGet"`
}

type container struct {
	Name    string   `yaml:"name"`
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env   []envVar `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	StartupProbe   *probe `yaml:"startupProbe"`
	Resources      struct {
		Limits   map[string]string `yaml:"limits"`
		Requests map[string]string `yaml:"requests"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	SecurityContext struct {
		ReadOnlyRootFilesystem bool `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
}

type podSpec struct {
	Containers      []container       `yaml:"containers"`
	NodeSelector    map[string]string `yaml:"nodeSelector"`
	SecurityContext struct {
		RunAsNonRoot bool `yaml:"runAsNonRoot"`
	} `yaml:"securityContext"`
	Tolerations []struct {
		Key string `yaml:"key"`
	} `yaml:"tolerations"`
	Volumes []struct {
		Name                  string `yaml:"name"`
		PersistentVolumeClaim *struct {
			ClaimName string `yaml:"claimName"`
		} `yaml:"persistentVolumeClaim"`
	} `yaml:"volumes"`
}

// Deployment is an apps/v1 Deployment.
type Deployment struct {
	Metadata meta `yaml:"metadata"`
	Spec     struct {
		Replicas *int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata meta    `yaml:"metadata"`
			Spec     podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// Service is a v1 Service.
type Service struct {
	Metadata meta `yaml:"metadata"`
	Spec     struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

// ScaledObject is a keda.sh/v1alpha1 ScaledObject.
type ScaledObject struct {
	Metadata meta `yaml:"metadata"`
	Spec     struct {
		ScaleTargetRef struct {
			APIVersion string `yaml:"apiVersion"`
			Kind       string `yaml:"kind"`
			Name       string `yaml:"name"`
		} `yaml:"scaleTargetRef"`
		MinReplicaCount *int `yaml:"minReplicaCount"`
		MaxReplicaCount *int `yaml:"maxReplicaCount"`
		Triggers        []struct {
			Type     string            `yaml:"type"`
			Metadata map[string]string `yaml:"metadata"`
		} `yaml:"triggers"`
	} `yaml:"spec"`
}

// Manifests is one `helm template` output, by kind.
type Manifests struct {
	Deployments   []Deployment
	Services      []Service
	ScaledObjects []ScaledObject
	ConfigMaps    map[string]map[string]string
	Secrets       map[string]map[string]string // stringData
	Kinds         map[string]int
}

// Parse splits a multi-document YAML stream into the objects the checks read.
func Parse(out []byte) (*Manifests, error) {
	m := &Manifests{ConfigMaps: map[string]map[string]string{}, Secrets: map[string]map[string]string{}, Kinds: map[string]int{}}
	for _, doc := range splitDocs(out) {
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			return nil, fmt.Errorf("document %q: %w", firstLine(doc), err)
		}
		if o.Kind == "" {
			continue
		}
		m.Kinds[o.Kind]++
		var err error
		switch o.Kind {
		case "Deployment":
			var d Deployment
			err = yaml.Unmarshal(doc, &d)
			m.Deployments = append(m.Deployments, d)
		case "Service":
			var s Service
			err = yaml.Unmarshal(doc, &s)
			m.Services = append(m.Services, s)
		case "ScaledObject":
			var s ScaledObject
			err = yaml.Unmarshal(doc, &s)
			m.ScaledObjects = append(m.ScaledObjects, s)
		case "ConfigMap":
			var c struct {
				Data map[string]string `yaml:"data"`
			}
			err = yaml.Unmarshal(doc, &c)
			m.ConfigMaps[o.Metadata.Name] = c.Data
		case "Secret":
			var s struct {
				StringData map[string]string `yaml:"stringData"`
			}
			err = yaml.Unmarshal(doc, &s)
			m.Secrets[o.Metadata.Name] = s.StringData
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.Kind, o.Metadata.Name, err)
		}
	}
	return m, nil
}

func splitDocs(out []byte) [][]byte {
	var docs [][]byte
	for _, d := range bytes.Split(append([]byte("\n"), out...), []byte("\n---")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// Expect is what the checks hold the rendered chart to.
type Expect struct {
	// Partitions caps the ScaledObject's maxReplicaCount.
	Partitions int
	// GPURoles must ask for nvidia.com/gpu, run the CUDA image and --provider cuda.
	GPURoles []string
}

// Effective is a container's view of the binary's settings: the value each
// flag ends up with (args over env over envFrom), and where it came from.
type Effective struct {
	Role   string
	Values map[string]string // flag name -> value (set explicitly)
	Source map[string]string // flag name -> "env NAME" / "arg"
}

// Get is the flag's value, or its default when the chart does not set it.
func (e Effective) Get(f Flags, name string) string {
	if v, ok := e.Values[name]; ok {
		return v
	}
	return f.ByName[name].Default
}

// Check runs every check and returns every problem found (nil when none).
func Check(m *Manifests, f Flags, want Expect) []error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if len(f.ByName) == 0 {
		return []error{errors.New("no flags for the run command in `triage flags`")}
	}
	eff := map[string]Effective{}
	deployByRole := map[string]Deployment{}
	mounts := map[string]string{} // role -> mount path of the shared PVC
	for _, d := range m.Deployments {
		role := d.Metadata.Labels["app.kubernetes.io/component"]
		deployByRole[role] = d
		ps := d.Spec.Template.Spec
		if len(ps.Containers) != 1 {
			fail("Deployment %s: want 1 container, got %d", d.Metadata.Name, len(ps.Containers))
			continue
		}
		c := ps.Containers[0]
		where := fmt.Sprintf("Deployment %s container %s", d.Metadata.Name, c.Name)
		e, problems := effective(m, f, role, c)
		for _, p := range problems {
			fail("%s: %s", where, p)
		}
		eff[role] = e

		if got := e.Values["target"]; got != role {
			fail("%s: --target %q, want the role %q", where, got, role)
		}
		if !ps.SecurityContext.RunAsNonRoot || !c.SecurityContext.ReadOnlyRootFilesystem {
			fail("%s: want runAsNonRoot and a read-only root filesystem", where)
		}

		// Listeners bind every interface and match the declared ports.
		ports := map[string]int{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		listen := map[int]string{} // port -> flag
		listeners := []string{"metrics-addr"}
		if role == "gateway" {
			listeners = append(listeners, "http-addr")
		}
		for _, name := range listeners {
			addr := e.Get(f, name)
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				fail("%s: --%s %q: %v", where, name, addr, err)
				continue
			}
			if host != "0.0.0.0" && host != "" && host != "::" {
				fail("%s: --%s %q listens on %s only, unreachable from other pods (want 0.0.0.0)", where, name, addr, host)
			}
			n, _ := strconv.Atoi(port)
			portName := strings.TrimSuffix(name, "-addr")
			if ports[portName] != n {
				fail("%s: --%s %q but containerPort %q is %d", where, name, addr, portName, ports[portName])
			}
			listen[n] = name
		}
		for _, cp := range c.Ports {
			if _, ok := listen[cp.ContainerPort]; !ok {
				fail("%s: containerPort %s (%d) has no listener", where, cp.Name, cp.ContainerPort)
			}
		}
		checkProbe := func(kind string, p *probe, path, wantFlag string) {
			if p == nil || p.HTTPGet == nil {
				fail("%s: no %s probe", where, kind)
				return
			}
			if p.HTTPGet.Path != path {
				fail("%s: %s probe path %q, want %q", where, kind, p.HTTPGet.Path, path)
			}
			n, err := strconv.Atoi(p.HTTPGet.Port)
			if err != nil {
				var ok bool
				if n, ok = ports[p.HTTPGet.Port]; !ok {
					fail("%s: %s probe port %q names no container port", where, kind, p.HTTPGet.Port)
					return
				}
			}
			got, ok := listen[n]
			if !ok {
				fail("%s: %s probe port %d is no listener's", where, kind, n)
			} else if wantFlag != "" && got != wantFlag {
				fail("%s: %s probe on --%s's port, want --%s", where, kind, got, wantFlag)
			}
		}
		checkProbe("liveness", c.LivenessProbe, "/healthz", "metrics-addr")
		wantReady := "metrics-addr"
		if role == "gateway" {
			wantReady = "http-addr"
		}
		checkProbe("readiness", c.ReadinessProbe, "/readyz", wantReady)
		if c.StartupProbe != nil {
			checkProbe("startup", c.StartupProbe, "/healthz", "")
		}

		// The registry lives on the shared volume.
		claims := map[string]bool{}
		for _, v := range ps.Volumes {
			if v.PersistentVolumeClaim != nil {
				claims[v.Name] = true
			}
		}
		reg := e.Get(f, "registry")
		for _, vm := range c.VolumeMounts {
			if claims[vm.Name] && strings.HasPrefix(reg, strings.TrimSuffix(vm.MountPath, "/")+"/") {
				mounts[role] = vm.MountPath
			}
		}
		if mounts[role] == "" {
			fail("%s: --registry %q is not on a mounted PersistentVolumeClaim", where, reg)
		}

		switch role {
		case "consumer":
			ok := false
			for _, ev := range c.Env {
				if ev.Name == "TRIAGE_INSTANCE_ID" && ev.ValueFrom != nil && ev.ValueFrom.FieldRef != nil && ev.ValueFrom.FieldRef.FieldPath == "metadata.name" {
					ok = true
				}
			}
			if !ok {
				fail("%s: TRIAGE_INSTANCE_ID must come from the pod name (fieldRef metadata.name)", where)
			}
		case "trainer", "monitor":
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
				fail("%s: want exactly 1 replica", where)
			}
		case "gateway":
			if e.Get(f, "api-keys-file") == "" && e.Get(f, "no-auth") != "true" {
				fail("%s: no --api-keys-file", where)
			}
		}
	}
	for _, role := range []string{"trainer", "consumer", "monitor", "gateway"} {
		if _, ok := deployByRole[role]; !ok {
			fail("no Deployment for role %s", role)
		}
	}
	paths := map[string]bool{}
	for _, p := range mounts {
		paths[p] = true
	}
	if len(paths) > 1 {
		fail("the shared registry volume is mounted at different paths: %v", mounts)
	}

	// Services point at ports their pods declare.
	for _, s := range m.Services {
		role := s.Spec.Selector["app.kubernetes.io/component"]
		d, ok := deployByRole[role]
		if !ok {
			fail("Service %s selects no Deployment (component %q)", s.Metadata.Name, role)
			continue
		}
		for _, p := range s.Spec.Ports {
			found := false
			for _, cp := range d.Spec.Template.Spec.Containers[0].Ports {
				if cp.Name == p.TargetPort || strconv.Itoa(cp.ContainerPort) == p.TargetPort {
					found = true
				}
			}
			if !found {
				fail("Service %s port %s: targetPort %q is not a port of Deployment %s", s.Metadata.Name, p.Name, p.TargetPort, d.Metadata.Name)
			}
		}
	}

	// KEDA scales the consumers on their own group's lag, within the partitions.
	for _, so := range m.ScaledObjects {
		where := "ScaledObject " + so.Metadata.Name
		cons, ok := deployByRole["consumer"]
		if !ok {
			continue
		}
		ce := eff["consumer"]
		ref := so.Spec.ScaleTargetRef
		if ref.Name != cons.Metadata.Name || (ref.Kind != "" && ref.Kind != "Deployment") {
			fail("%s: scales %s %s, want Deployment %s", where, ref.Kind, ref.Name, cons.Metadata.Name)
		}
		if cons.Spec.Replicas != nil {
			fail("%s: Deployment %s sets replicas too; KEDA and helm upgrades would fight over it", where, cons.Metadata.Name)
		}
		if so.Spec.MaxReplicaCount == nil {
			fail("%s: no maxReplicaCount", where)
		} else {
			if want.Partitions > 0 && *so.Spec.MaxReplicaCount > want.Partitions {
				fail("%s: maxReplicaCount %d > %d partitions: the extra consumers would sit idle", where, *so.Spec.MaxReplicaCount, want.Partitions)
			}
			if so.Spec.MinReplicaCount != nil && *so.Spec.MinReplicaCount > *so.Spec.MaxReplicaCount {
				fail("%s: minReplicaCount %d > maxReplicaCount %d", where, *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount)
			}
		}
		group := ce.Get(f, "group")
		brokers := ce.Get(f, "brokers")
		topics := map[string]bool{}
		for _, r := range splitList(ce.Get(f, "route")) {
			topic, _, _ := strings.Cut(r, "=")
			topics[topic] = true
		}
		if len(so.Spec.Triggers) == 0 {
			fail("%s: no triggers", where)
		}
		for i, tr := range so.Spec.Triggers {
			md := tr.Metadata
			if tr.Type != "kafka" {
				fail("%s trigger %d: type %q, want kafka", where, i, tr.Type)
				continue
			}
			if md["consumerGroup"] != group {
				fail("%s trigger %d: consumerGroup %q, but the consumers' --group is %q", where, i, md["consumerGroup"], group)
			}
			if md["bootstrapServers"] != brokers {
				fail("%s trigger %d: bootstrapServers %q, but the consumers' --brokers is %q", where, i, md["bootstrapServers"], brokers)
			}
			if t := md["topic"]; t != "" && !topics[t] {
				fail("%s trigger %d: topic %q is not an input topic of the consumers (--route %q)", where, i, t, ce.Get(f, "route"))
			}
			if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n <= 0 {
				fail("%s trigger %d: lagThreshold %q, want a positive integer", where, i, md["lagThreshold"])
			}
		}
	}

	// GPU roles ask for a GPU, run the CUDA image and the CUDA provider.
	for _, role := range want.GPURoles {
		d, ok := deployByRole[role]
		if !ok {
			fail("GPU role %s has no Deployment", role)
			continue
		}
		where := "Deployment " + d.Metadata.Name
		ps := d.Spec.Template.Spec
		c := ps.Containers[0]
		if got := c.Resources.Limits["nvidia.com/gpu"]; got != "1" {
			fail("%s: limits nvidia.com/gpu %q, want 1", where, got)
		}
		if got := eff[role].Get(f, "provider"); got != "cuda" {
			fail("%s: --provider %q, want cuda", where, got)
		}
		if !strings.HasSuffix(c.Image, "-cuda") {
			fail("%s: image %q is not the CUDA image (tag ending -cuda)", where, c.Image)
		}
		if len(ps.NodeSelector) == 0 {
			fail("%s: no nodeSelector for GPU nodes", where)
		}
		tol := false
		for _, t := range ps.Tolerations {
			tol = tol || t.Key == "nvidia.com/gpu"
		}
		if !tol {
			fail("%s: no toleration for nvidia.com/gpu taints", where)
		}
	}
	return errs
}

// effective resolves a container's settings the way Kubernetes and the
// binary do: envFrom, then env (later entries win), then --flags in args.
func effective(m *Manifests, f Flags, role string, c container) (Effective, []string) {
	var problems []string
	e := Effective{Role: role, Values: map[string]string{}, Source: map[string]string{}}
	env := map[string]string{}
	var order []string
	setEnv := func(name, value, from string) {
		if _, ok := env[name]; !ok {
			order = append(order, name)
		}
		env[name] = value
		if strings.HasPrefix(name, "TRIAGE_") {
			if _, ok := f.ByEnv[name]; !ok {
				problems = append(problems, fmt.Sprintf("%s sets %s, which is no `triage run` flag's variable", from, name))
			}
		}
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			data, ok := m.ConfigMaps[ef.ConfigMapRef.Name]
			if !ok {
				problems = append(problems, fmt.Sprintf("envFrom ConfigMap %q is not in the chart", ef.ConfigMapRef.Name))
			}
			for _, k := range sortedKeys(data) {
				setEnv(k, data[k], "ConfigMap "+ef.ConfigMapRef.Name)
			}
		case ef.SecretRef != nil:
			data := m.Secrets[ef.SecretRef.Name]
			for _, k := range sortedKeys(data) {
				setEnv(k, data[k], "Secret "+ef.SecretRef.Name)
			}
		}
	}
	for _, ev := range c.Env {
		v := ev.Value
		if ev.ValueFrom != nil {
			switch {
			case ev.ValueFrom.ConfigMapKeyRef != nil:
				v = m.ConfigMaps[ev.ValueFrom.ConfigMapKeyRef.Name][ev.ValueFrom.ConfigMapKeyRef.Key]
			case ev.ValueFrom.SecretKeyRef != nil:
				v = m.Secrets[ev.ValueFrom.SecretKeyRef.Name][ev.ValueFrom.SecretKeyRef.Key]
			case ev.ValueFrom.FieldRef != nil:
				v = "$(" + ev.ValueFrom.FieldRef.FieldPath + ")"
			}
		}
		setEnv(ev.Name, v, "env")
	}
	for _, name := range order {
		if fl, ok := f.ByEnv[name]; ok && env[name] != "" { // the binary ignores empty variables
			e.Values[fl.Name] = env[name]
			e.Source[fl.Name] = "env " + name
		}
	}

	args := c.Args
	if len(args) == 0 || args[0] != "run" {
		problems = append(problems, fmt.Sprintf("args %q: want `run --target %s ...`", args, role))
		return e, problems
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			problems = append(problems, fmt.Sprintf("argument %q is not a flag (`triage run` takes no positional arguments)", a))
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		fl, ok := f.ByName[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("argument %q: `triage run` has no flag --%s", a, name))
			continue
		}
		if !hasValue {
			if isBool(fl) {
				value = "true"
			} else if i+1 < len(args) {
				i++
				value = args[i]
			} else {
				problems = append(problems, fmt.Sprintf("flag --%s has no value", name))
			}
		}
		e.Values[name] = value
		e.Source[name] = "arg"
	}
	return e, problems
}

func isBool(f Flag) bool { return f.Default == "true" || f.Default == "false" }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
