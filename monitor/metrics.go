package monitor

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/triage-ml/triage/schemas"
)

type metrics struct {
	windows       *prometheus.CounterVec // model, topic
	events        *prometheus.CounterVec // model, topic
	psi           *prometheus.GaugeVec   // model, version, topic
	estAccuracy   *prometheus.GaugeVec
	confMean      *prometheus.GaugeVec
	drift         *prometheus.GaugeVec
	oov           *prometheus.GaugeVec
	skipped       *prometheus.CounterVec // reason
	eventErrors   prometheus.Counter
	domainAUC     *prometheus.GaugeVec
	domainSeconds prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{"model", "version", "topic"})
	}
	m := &metrics{
		windows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "triage_monitor_windows_total",
			Help: "Monitoring windows reported, by model and input topic."}, []string{"model", "topic"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "triage_monitor_drift_events_total",
			Help: "Windows over any drift threshold, by model and input topic."}, []string{"model", "topic"}),
		psi:         gauge("triage_monitor_label_psi", "Population stability index of the last window's predicted labels against the validation split."),
		estAccuracy: gauge("triage_monitor_estimated_accuracy", "Accuracy of the last window estimated without labels (ATC)."),
		confMean:    gauge("triage_monitor_confidence_mean", "Mean calibrated top-1 probability of the last window."),
		drift:       gauge("triage_monitor_drift", "1 when the last window crossed a drift threshold, else 0."),
		oov:         gauge("triage_monitor_oov_rate", "Share of the last window's input n-grams (or word pieces) unseen in training."),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "triage_monitor_skipped_records_total",
			Help: "Prediction records the monitor could not use, by reason."}, []string{"reason"}),
		eventErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "triage_monitor_event_errors_total",
			Help: "Drift events that could not be produced to the drift topic."}),
		domainAUC: gauge("triage_monitor_domain_auc", "ROC AUC of the last domain-classifier test (reference vs window texts; 0.5: indistinguishable)."),
		domainSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "triage_monitor_domain_test_duration_seconds",
			Help: "Time of one domain-classifier test.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
	}
	for _, c := range []prometheus.Collector{m.windows, m.events, m.psi, m.estAccuracy, m.confMean, m.drift, m.oov, m.skipped, m.eventErrors, m.domainAUC, m.domainSeconds} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{"undecodable", "no_signals", "domain_test_texts"} {
		m.skipped.WithLabelValues(r)
	}
	return m, nil
}

// init makes a stream's counters exist at zero, so rates and alerts see
// them before the first window or drift event.
func (m *metrics) init(k streamKey) {
	m.windows.WithLabelValues(k.model, k.topic)
	m.events.WithLabelValues(k.model, k.topic)
}

func (m *metrics) window(k streamKey, w schemas.DriftWindow) {
	m.windows.WithLabelValues(k.model, k.topic).Inc()
	if w.Drift {
		m.events.WithLabelValues(k.model, k.topic).Inc()
	}
	l := []string{k.model, w.Model.Version, k.topic}
	m.psi.WithLabelValues(l...).Set(w.LabelPSI)
	m.estAccuracy.WithLabelValues(l...).Set(w.EstimatedAccuracy)
	m.confMean.WithLabelValues(l...).Set(w.Confidence.Mean)
	m.oov.WithLabelValues(l...).Set(w.Input.OOVRate)
	d := 0.0
	if w.Drift {
		d = 1
	}
	m.drift.WithLabelValues(l...).Set(d)
}
