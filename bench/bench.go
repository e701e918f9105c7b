// Package bench holds the harnesses behind `triage bench`: benchmarks that
// compare against a baseline measured in the same run on the same machine
// (pure Go beside ONNX Runtime, a passthrough consumer beside a model
// consumer, a Python encoder beside Triage's), because only the ratios carry
// from one machine to another.
//
// Each entry point takes a config, reports progress through optional hooks
// so a command can print while a long run goes on, and returns the figures;
// formatting them is the caller's business.
package bench

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/triage-ml/triage/internal/dataset"
)

// Timing is throughput and call latency of one measured cell.
type Timing struct {
	Rate     float64 // items per second
	P50, P99 float64 // per call, µs
}

// measure calls fn on consecutive batches of items (wrapping around) for
// about d, after a short warm-up, and reports throughput and call latency.
func measure[T any](ctx context.Context, items []T, batch int, d time.Duration, fn func([]T) error) (Timing, error) {
	buf := make([]T, batch)
	next := 0
	fill := func() {
		for i := range buf {
			buf[i] = items[next]
			next = (next + 1) % len(items)
		}
	}
	for range 3 { // warm-up: first ORT runs allocate arenas
		fill()
		if err := fn(buf); err != nil {
			return Timing{}, err
		}
	}
	var lat []float64
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		if err := ctx.Err(); err != nil {
			return Timing{}, err
		}
		fill()
		t0 := time.Now()
		if err := fn(buf); err != nil {
			return Timing{}, err
		}
		lat = append(lat, float64(time.Since(t0).Microseconds()))
		n += batch
	}
	elapsed := time.Since(start).Seconds()
	p50, p99 := percentiles(lat)
	return Timing{Rate: float64(n) / elapsed, P50: p50, P99: p99}, nil
}

// percentiles sorts lat in place and returns its median and 99th percentile.
func percentiles(lat []float64) (p50, p99 float64) {
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100]
}

// loadTexts reads the text column of a dataset file; labels may be absent
// because the benchmarks only classify or embed.
func loadTexts(path, textColumn string) ([]string, error) {
	ds, err := dataset.Load(path, dataset.Options{TextColumn: textColumn, LabelOptional: true})
	if err != nil {
		return nil, fmt.Errorf("load texts: %w", err)
	}
	texts := make([]string, len(ds.Examples))
	for i, e := range ds.Examples {
		texts[i] = e.Text
	}
	return texts, nil
}
