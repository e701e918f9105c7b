#!/usr/bin/env bash
# Checks the Helm chart (deploy/helm/triage) without a cluster:
#   1. helm lint, default values and the GPU values (deploy/helm/values-gpu.yaml);
#   2. helm template of each, validated against Kubernetes' own OpenAPI schemas
#      by kubectl-validate (KEDA's ScaledObject: the vendored CRD in
#      deploy/kubernetes/crds);
#   3. the Go checks (deploy/helmtest, build tag "helm"): flags and TRIAGE_*
#      variables against `triage flags`, ports and probes, KEDA, GPU.
# helm and kubectl-validate are built from the Go module proxy the first time
# and cached in .cache/bin.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=v3.22.0
KUBECTL_VALIDATE_VERSION=v0.0.4
# Kubernetes version the manifests are validated for (kubectl-validate v0.0.4
# ships schemas for 1.23-1.30).
KUBE_VERSION="${KUBE_VERSION:-1.30}"

CHART=deploy/helm/triage
GPU_VALUES=deploy/helm/values-gpu.yaml
CRDS=deploy/kubernetes/crds
BIN="$PWD/.cache/bin"
mkdir -p "$BIN"

step() { printf '\n== %s\n' "$*" >&2; }

# go_tool NAME PACKAGE VERSION: builds PACKAGE@VERSION into .cache/bin once.
go_tool() {
	local name=$1 pkg=$2 version=$3 stamp="$BIN/.$1.version"
	if [ -x "$BIN/$name" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$pkg@$version" ]; then
		return
	fi
	echo "building $name $version from the Go module proxy into .cache/bin (first run only)" >&2
	local start=$SECONDS
	GOBIN="$BIN" go install "$pkg@$version"
	echo "$pkg@$version" >"$stamp"
	echo "built $name in $((SECONDS - start)) s" >&2
}

step "tools: helm $HELM_VERSION, kubectl-validate $KUBECTL_VALIDATE_VERSION"
go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
go_tool kubectl-validate sigs.k8s.io/kubectl-validate "$KUBECTL_VALIDATE_VERSION"
HELM="$BIN/helm"
if [ "${1:-}" = "--install-only" ]; then
	exit 0 # scripts/test.sh builds the tools ahead, in the background
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Offline: no cluster, no repositories, no kubeconfig.
export HELM_CACHE_HOME="$tmp/helm/cache" HELM_CONFIG_HOME="$tmp/helm/config" HELM_DATA_HOME="$tmp/helm/data"
: >"$tmp/kubeconfig"
export KUBECONFIG="$tmp/kubeconfig"

# name -> helm values arguments
variants=(default gpu no-keda)
values_args() {
	case $1 in
	default) ;;
	gpu) echo "-f $GPU_VALUES" ;;
	no-keda) echo "--set keda.enabled=false" ;;
	esac
}

for v in "${variants[@]}"; do
	# shellcheck disable=SC2046
	step "helm lint ($v)" && "$HELM" lint --strict "$CHART" $(values_args "$v")
done

# The validator must not pass what it cannot check: a ScaledObject with a
# wrong type and an unknown field, and a Deployment with an unknown field,
# have to fail (so the vendored CRD is loaded and the schemas are strict).
step "kubectl-validate rejects broken manifests (self-check)"
mkdir -p "$tmp/broken"
cat >"$tmp/broken/scaledobject.yaml" <<'YAML'
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: broken
spec:
  scaleTargetRef:
    name: triage-consumer
  maxReplicaCount: "six"
  triggers:
    - type: kafka
      metadata:
        lagThreshold: 1000
YAML
cat >"$tmp/broken/deployment.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
spec:
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      containers:
        - name: c
          image: busybox
          livenessProbe:
            httpGet: {path: /healthz, prot: metrics}
YAML
for f in "$tmp"/broken/*.yaml; do
	if "$BIN/kubectl-validate" --version "$KUBE_VERSION" --local-crds "$CRDS" "$f" >"$tmp/broken.out" 2>&1; then
		cat "$tmp/broken.out" >&2
		echo "kubectl-validate accepted the broken $(basename "$f"): the checks below would prove nothing" >&2
		exit 1
	fi
	echo " $(basename "$f") rejected: $(grep -m1 'Invalid value' "$tmp/broken.out" | cut -c1-200)" >&2
done

for v in "${variants[@]}"; do
	step "helm template ($v) | kubectl-validate --version $KUBE_VERSION --local-crds $CRDS"
	out="$tmp/render/$v"
	mkdir -p "$out"
	# shellcheck disable=SC2046
	"$HELM" template triage "$CHART" --namespace triage --kube-version "$KUBE_VERSION.0" $(values_args "$v") --output-dir "$out" >/dev/null
	find "$out" -name '*.yaml' | sort | sed "s|^$out/| |" >&2
	"$BIN/kubectl-validate" --version "$KUBE_VERSION" --local-crds "$CRDS" "$out"
done

step "go test -tags helm ./deploy/helmtest/ (flags, env, ports, probes, KEDA, GPU)"
go build -o "$tmp/triage" ./cmd/triage
HELM_BIN="$HELM" TRIAGE_BIN="$tmp/triage" go test -count=1 -tags helm ./deploy/helmtest/

echo "helm chart OK" >&2
