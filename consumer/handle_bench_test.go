package consumer

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/triage-ml/triage/inference"
	"github.com/triage-ml/triage/schemas"
)

// fakeSession stands in for Kafka in the handle benchmarks: produce
// settles each promise at once and end always commits.
type fakeSession struct{ produced int }

func (f *fakeSession) poll(context.Context, int) kgo.Fetches { return nil }
func (f *fakeSession) begin() error                          { return nil }
func (f *fakeSession) produce(_ context.Context, r *kgo.Record, p func(*kgo.Record, error)) {
	f.produced++
	p(r, nil)
}
func (f *fakeSession) end(context.Context, bool, []*kgo.Record) (bool, error) { return true, nil }
func (f *fakeSession) flush(context.Context) error                            { return nil }
func (f *fakeSession) client() *kgo.Client                                    { return nil }
func (f *fakeSession) close()                                                 {}

// benchRecords builds input records from the Banking77 texts (env
// TRIAGE_BENCH_DATA, default /work/shared/data/banking77/train.csv).
func benchRecords(b *testing.B, topic string, n int) []*kgo.Record {
	path := os.Getenv("TRIAGE_BENCH_DATA")
	if path == "" {
		path = "/work/shared/data/banking77/train.csv"
	}
	f, err := os.Open(path)
	if err != nil {
		b.Skipf("no benchmark data: %v", err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		b.Fatal(err)
	}
	rows = rows[1:]
	recs := make([]*kgo.Record, n)
	ts := time.Now()
	for i := range recs {
		v, _ := json.Marshal(map[string]string{"id": fmt.Sprintf("q-%d", i), "text": rows[i%len(rows)][0], "source": "web"})
		recs[i] = &kgo.Record{Topic: topic, Partition: 0, Offset: int64(i), Value: v, Timestamp: ts}
	}
	return recs
}

func benchHandle(b *testing.B, p Predictor) {
	const topic, n = "in", 1000
	recs := benchRecords(b, topic, n)
	c, err := New(Config{Brokers: []string{"x:1"}, Routes: map[string]Predictor{topic: p}, Review: ReviewPolicy{Topic: "review", MaxMargin: 0.1, Rate: 5}})
	if err != nil {
		b.Fatal(err)
	}
	s := &fakeSession{}
	ctx := context.Background()
	if err := c.handle(ctx, s, recs); err != nil { // warm up pools and ORT
		b.Fatal(err)
	}
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu0 := cpuTime()
	b.ResetTimer()
	for range b.N {
		if err := c.handle(ctx, s, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(cpu.Nanoseconds())/msgsOf(b, n), "cpu-ns/msg")
	msgs := float64(b.N * n)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/msgs, "ns/msg")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/msgs, "allocs/msg")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/msgs, "B/msg")
}

// BenchmarkHandleModel is the per-transaction path (decode → validate →
// featurise → ORT → encode → produce) on 1000 Banking77 records with the
// linear model in TRIAGE_BENCH_MODEL (default /tmp/h4/support).
func BenchmarkHandleModel(b *testing.B) {
	dir := os.Getenv("TRIAGE_BENCH_MODEL")
	if dir == "" {
		dir = "/tmp/h4/support"
	}
	if _, err := os.Stat(dir); err != nil {
		b.Skipf("no model bundle: %v", err)
	}
	m, err := inference.Open(dir, inference.ModelOptions{})
	if err != nil {
		b.Skipf("open model: %v", err)
	}
	defer m.Close()
	benchHandle(b, m)
}

// BenchmarkHandleModelUnstaged is BenchmarkHandleModel with the
// featurise ‖ infer pipeline off (the model seen only as a Predictor).
func BenchmarkHandleModelUnstaged(b *testing.B) {
	dir := os.Getenv("TRIAGE_BENCH_MODEL")
	if dir == "" {
		dir = "/tmp/h4/support"
	}
	if _, err := os.Stat(dir); err != nil {
		b.Skipf("no model bundle: %v", err)
	}
	m, err := inference.Open(dir, inference.ModelOptions{})
	if err != nil {
		b.Skipf("open model: %v", err)
	}
	defer m.Close()
	benchHandle(b, unstaged{m})
}

type unstaged struct{ Predictor }

// BenchmarkDecodeInput compares the fast path with the validator on
// Banking77 records.
func BenchmarkDecodeInput(b *testing.B) {
	recs := benchRecords(b, "in", 1000)
	for _, bc := range []struct {
		name string
		f    func([]byte) (schemas.Input, error)
	}{{"fast", decodeInput}, {"validator", schemas.DecodeInput}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				if _, err := bc.f(recs[i%len(recs)].Value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandlePassthrough measures the consumer's own cost with no model.
func BenchmarkHandlePassthrough(b *testing.B) { benchHandle(b, Passthrough{}) }

// cpuTime is the process's user+system CPU time: on a shared, loaded box
// it varies less than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func msgsOf(b *testing.B, n int) float64 { return float64(b.N * n) }
