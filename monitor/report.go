package monitor

import (
	"cmp"
	"slices"
	"time"

	"github.com/triage-ml/triage/schemas"
)

// Report is the monitor's state as GET /v1/drift serves it.
type Report struct {
	GeneratedAt time.Time      `json:"generated_at"`
	Streams     []StreamReport `json:"streams"`
}

// StreamReport is one model on one input topic.
type StreamReport struct {
	Model       string `json:"model"`
	Topic       string `json:"topic"`
	Version     string `json:"version"`
	DriftEvents int    `json:"drift_events"`
	// Open is the window being filled now.
	Open *OpenWindow `json:"open,omitempty"`
	// Reference is how the version's thresholds were set.
	Reference *ReferenceSummary `json:"reference,omitempty"`
	// Windows are the reported windows, oldest first (at most limit).
	Windows []schemas.DriftWindow `json:"windows"`
}

// OpenWindow is the window in progress.
type OpenWindow struct {
	Count int       `json:"count"`
	Size  int       `json:"size"`
	Start time.Time `json:"start"`
}

// ReferenceSummary is what a version's reference says about its alarms.
type ReferenceSummary struct {
	ValAccuracy    float64             `json:"val_accuracy"`
	Temperature    float64             `json:"temperature"`
	ECEBefore      float64             `json:"ece_before"`
	ECEAfter       float64             `json:"ece_after"`
	WindowSize     int                 `json:"window_size"`
	FalseAlarmRate float64             `json:"false_alarm_rate"`
	Bootstraps     int                 `json:"bootstraps"`
	Thresholds     []schemas.Threshold `json:"thresholds"`
}

// Report returns the state of every stream (of model when not ""), with
// at most limit windows each (0: all kept).
func (m *Monitor) Report(model string, limit int) Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := Report{GeneratedAt: m.cfg.Now().UTC(), Streams: []StreamReport{}}
	for k, s := range m.streams {
		if model != "" && k.model != model {
			continue
		}
		r := StreamReport{Model: k.model, Topic: k.topic, Version: s.version, DriftEvents: s.events}
		ws := s.history
		if limit > 0 && len(ws) > limit {
			ws = ws[len(ws)-limit:]
		}
		r.Windows = append([]schemas.DriftWindow{}, ws...)
		if s.win != nil {
			r.Open = &OpenWindow{Count: s.count, Size: m.windowCount(s.ref), Start: s.first}
		}
		if s.ref != nil && s.ref.ref != nil {
			ref := s.ref.ref
			sum := &ReferenceSummary{ValAccuracy: ref.ValAccuracy, Temperature: ref.Temperature, ECEBefore: ref.ECEBefore,
				ECEAfter: ref.ECEAfter, WindowSize: ref.WindowSize, FalseAlarmRate: ref.FalseAlarmRate, Bootstraps: ref.Bootstraps}
			for n, t := range ref.Thresholds {
				sum.Thresholds = append(sum.Thresholds, schemas.Threshold{Statistic: n, Direction: t.Direction, Value: t.Value})
			}
			slices.SortFunc(sum.Thresholds, func(a, b schemas.Threshold) int { return cmp.Compare(a.Statistic, b.Statistic) })
			r.Reference = sum
		}
		out.Streams = append(out.Streams, r)
	}
	slices.SortFunc(out.Streams, func(a, b StreamReport) int {
		return cmp.Or(cmp.Compare(a.Model, b.Model), cmp.Compare(a.Topic, b.Topic))
	})
	return out
}
