package gateway

import (
	"errors"

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
	m.requests = register(reg, m.requests, &err)
	m.duration = register(reg, m.duration, &err)
	m.batchSize = register(reg, m.batchSize, &err)
	m.rateLimited = register(reg, m.rateLimited, &err)
	return m, err
}

// register adds c to reg, or reuses the collector already registered under
// the same name (a second gateway on one registry shares its series).
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		*errp = errors.Join(*errp, err)
	}
	return c
}
