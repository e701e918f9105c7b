// Package helmtest checks the Helm chart in deploy/helm/triage against the
// triage binary: the chart may only set flags and TRIAGE_* variables that
// `triage run` has, its ports and probes must match the listeners it
// configures, KEDA must scale the consumers' own group within the partition
// count, and the GPU values must ask for a GPU.
//
// The tests carry the build tag "helm" and need a helm binary and a built
// triage binary; scripts/check-helm.sh builds both and runs them:
//
//	HELM_BIN=.cache/bin/helm TRIAGE_BIN=/tmp/triage go test -tags helm ./deploy/helmtest/
package helmtest
