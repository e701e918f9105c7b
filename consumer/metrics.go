package consumer

import "github.com/prometheus/client_golang/prometheus"

// metrics are registered on the Registerer the caller passes in, so tests
// and `triage dev` can run several consumers without global state.
type metrics struct {
	records      *prometheus.CounterVec // topic, outcome
	deadLetters  *prometheus.CounterVec // reason
	truncated    prometheus.Counter     //
	abstained    *prometheus.CounterVec // topic
	batchRecords prometheus.Histogram   //
	inference    prometheus.Histogram   // seconds per ORT call
	latency      prometheus.Histogram   // record timestamp -> prediction produced
	transactions *prometheus.CounterVec // result
	pollErrors   prometheus.Counter     //
	inflight     prometheus.Gauge       //
	// reviewOffered counts uncertain predictions produced to the review
	// queue (a batch aborted after producing them offers them again).
	reviewOffered prometheus.Counter
	// lag is records behind the end of each partition as of its last fetch
	// (the high watermark, or the last stable offset under read_committed);
	// what KEDA and the lag alert watch.
	lag *prometheus.GaugeVec // topic, partition
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triage_consumer_records_total", Help: "Input records handled, by topic and outcome (predicted, dead_letter).",
		}, []string{"topic", "outcome"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triage_consumer_dead_letters_total", Help: "Records sent to the dead-letter topic, by reason code.",
		}, []string{"reason"}),
		truncated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "triage_consumer_truncated_total", Help: "Texts longer than the model window, classified on their beginning.",
		}),
		abstained: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triage_consumer_abstained_total", Help: "Predictions the model abstained on (out of scope: abstention score under its threshold), by input topic.",
		}, []string{"topic"}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "triage_consumer_batch_records", Help: "Records per inference micro-batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		inference: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "triage_consumer_inference_duration_seconds", Help: "Featurise + ONNX Runtime time per micro-batch.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "triage_consumer_end_to_end_latency_seconds", Help: "From the input record's timestamp to its prediction being produced.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 2, 16),
		}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triage_consumer_transactions_total", Help: "Kafka transactions (or at-least-once commits), by result.",
		}, []string{"result"}),
		pollErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "triage_consumer_poll_errors_total", Help: "Fetch errors reported by the Kafka client.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "triage_consumer_inflight_records", Help: "Records polled and not yet committed.",
		}),
		reviewOffered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "triage_consumer_review_offered_total", Help: "Predictions produced to the review queue for human labelling: uncertain ones (sampled) and, with --review-abstained, abstained ones.",
		}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "triage_consumer_lag_records", Help: "Records behind the end of each assigned partition, as of its last fetch.",
		}, []string{"topic", "partition"}),
	}
	for _, c := range []prometheus.Collector{m.records, m.deadLetters, m.truncated, m.abstained, m.batchRecords, m.inference,
		m.latency, m.transactions, m.pollErrors, m.inflight, m.reviewOffered, m.lag} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
