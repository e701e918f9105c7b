package gateway

import (
	"github.com/triage-ml/triage/internal/telemetry"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests    *prometheus.CounterVec   // route, code
	duration    *prometheus.HistogramVec // route
	batchSize   *prometheus.HistogramVec // model
	rateLimited *prometheus.CounterVec   // key
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triage_gateway_requests_total", Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "triage_gateway_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "triage_gateway_batch_size", Help: "Texts per inference call (coalesced across requests when dynamic batching is on).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}, []string{"model"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triage_gateway_rate_limited_total", Help: "Requests refused with 429, by API key name.",
		}, []string{"key"}),
	}
	var err error
	m.requests = telemetry.Register(reg, m.requests, &err)
	m.duration = telemetry.Register(reg, m.duration, &err)
	m.batchSize = telemetry.Register(reg, m.batchSize, &err)
	m.rateLimited = telemetry.Register(reg, m.rateLimited, &err)
	return m, err
}
