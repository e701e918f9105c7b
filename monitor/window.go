package monitor

import (
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/triage-ml/triage/drift"
	"github.com/triage-ml/triage/schemas"
)

// stream is one model's traffic from one input topic: the open window and
// the reported ones.
type stream struct {
	key      streamKey
	version  string
	ref      *modelRef
	win      *drift.Window
	count    int
	openedAt time.Time // wall clock, for closing by time
	first    time.Time // classified_at of the window's first and last predictions
	last     time.Time
	history  []schemas.DriftWindow
	events   int
	closed   int      // windows reported
	ids      []string // a uniform sample of the window's record ids, for the domain test
	seen     int      // ids offered to the sample
}

// sampleID keeps a uniform sample of up to drift.DomainSample of the
// window's ids (reservoir sampling).
func (s *stream) sampleID(id string, rng *rand.Rand) {
	s.seen++
	if len(s.ids) < drift.DomainSample {
		s.ids = append(s.ids, id)
	} else if j := rng.IntN(s.seen); j < drift.DomainSample {
		s.ids[j] = id
	}
}

func (s *stream) open(version string, ref *modelRef, at time.Time) {
	n := 0
	if ref.ref != nil {
		n = len(ref.ref.Labels)
	}
	s.version, s.ref, s.win, s.count = version, ref, drift.NewWindow(n), 0
	s.ids, s.seen = nil, 0
	s.openedAt, s.first, s.last = time.Now(), at, at
}

func (s *stream) add(o drift.Observation, at time.Time) {
	s.win.Add(o)
	s.count++
	if at.After(s.last) {
		s.last = at
	}
	if at.Before(s.first) {
		s.first = at
	}
}

// close computes the window's statistics and resets the stream; windows
// under minCount (closed by time or by a swap) are reported without
// alarms, since the reference's thresholds were set for full windows.
func (s *stream) close(kind string, minCount int) *schemas.DriftWindow {
	if s.win == nil || s.count == 0 {
		s.win = nil
		return nil
	}
	ref := s.ref.ref
	st := s.win.Stats(ref)
	if kind != "count" && s.count < minCount {
		st.Alerts, st.Drift = nil, false
	}
	w := &schemas.DriftWindow{
		Timestamp: s.last, Model: schemas.ModelRef{Name: s.key.model, Version: s.version}, Topic: s.key.topic,
		Window:   schemas.WindowRef{Start: s.first, End: s.last, Count: s.count, Kind: kind},
		LabelPSI: finite(st.LabelPSI), LabelJS: finite(st.LabelJS),
		Confidence: schemas.ConfidenceStat{Mean: finite(st.ConfMean), P10: finite(st.ConfP10), P50: finite(st.ConfP50),
			P90: finite(st.ConfP90), LowShare: finite(st.LowConfShare), MarginMean: finite(st.MarginMean)},
		EstimatedAccuracy: finite(st.EstAccuracyATC), EstimatedAccuracyCBPE: finite(st.EstAccuracyCBPE),
		Labelled: st.Labelled,
		Input:    schemas.InputStat{TokensMean: finite(st.TokensMean), OOVRate: finite(st.OOVRate)},
		Drift:    st.Drift, Alerts: append([]string{}, st.Alerts...), Thresholds: []schemas.Threshold{},
	}
	if st.Labelled > 0 && !math.IsNaN(st.TrueAccuracy) {
		a := st.TrueAccuracy
		w.TrueAccuracy = &a
	}
	if !math.IsNaN(st.EmbedDist) {
		w.Embedding = &schemas.EmbeddingStat{CentroidDistance: st.EmbedDist}
	}
	if ref != nil {
		for i, l := range ref.Labels {
			share := 0.0
			if i < len(st.LabelShares) {
				share = st.LabelShares[i]
			}
			if share > 0 || ref.LabelShares[i] > 0 {
				w.LabelShares = append(w.LabelShares, schemas.LabelShare{Label: l, Share: share, Reference: ref.LabelShares[i]})
			}
		}
		// The thresholds this window was judged by: rescaled to its count.
		ths := ref.ThresholdsFor(s.count)
		names := make([]string, 0, len(ths))
		for n := range ths {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			t := ths[n]
			w.Thresholds = append(w.Thresholds, schemas.Threshold{Statistic: n, Direction: t.Direction, Value: t.Value})
		}
	}
	if w.LabelShares == nil {
		w.LabelShares = []schemas.LabelShare{}
	}
	s.win = nil
	return w
}

// finite maps NaN and infinities (an empty statistic) to 0, which JSON can
// carry.
func finite(x float64) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	return x
}

// labelMemory keeps the latest label of the most recent ids, dropping the
// oldest first.
type labelMemory struct {
	max   int
	m     map[string]string
	order []string
	head  int
}

func newLabelMemory(n int) *labelMemory { return &labelMemory{max: n, m: map[string]string{}} }

func (l *labelMemory) put(id, label string) {
	if _, ok := l.m[id]; !ok {
		if len(l.order) < l.max {
			l.order = append(l.order, id)
		} else {
			delete(l.m, l.order[l.head])
			l.order[l.head] = id
			l.head = (l.head + 1) % l.max
		}
	}
	l.m[id] = label
}

func (l *labelMemory) get(id string) (string, bool) {
	v, ok := l.m[id]
	return v, ok
}
