package bench

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMeasureCyclesThroughItems(t *testing.T) {
	items := []int{0, 1, 2}
	var seen []int
	tm, err := measure(context.Background(), items, 2, 5*time.Millisecond, func(b []int) error {
		seen = append(seen, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range seen {
		if v != i%len(items) {
			t.Fatalf("call order %v: batches must take consecutive items, wrapping around", seen[:i+1])
		}
	}
	if tm.Rate <= 0 || tm.P99 < tm.P50 {
		t.Fatalf("timing %+v", tm)
	}
}

func TestMeasureStopsOnError(t *testing.T) {
	boom := errors.New("boom")
	if _, err := measure(context.Background(), []int{1}, 1, time.Second, func([]int) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := measure(ctx, []int{1}, 1, time.Second, func([]int) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestPercentiles(t *testing.T) {
	lat := make([]float64, 200)
	for i := range lat {
		lat[i] = float64(len(lat) - i) // descending: percentiles must sort
	}
	if p50, p99 := percentiles(lat); p50 != 101 || p99 != 199 {
		t.Fatalf("p50, p99 = %v, %v; want 101, 199", p50, p99)
	}
}
