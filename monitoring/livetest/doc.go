// Package livetest checks Triage's monitoring against real servers: `triage
// dev` serving traffic, scraped by a real Prometheus (scripts/prometheus-local)
// that loads monitoring/prometheus/rules. Every Grafana panel query, every
// dashboard variable, every recording rule and every alert expression runs
// through the Prometheus HTTP API and must return at least one series. The
// test is behind the `prometheus` build tag:
//
//	go test -tags prometheus -count=1 -v ./monitoring/livetest/
package livetest
