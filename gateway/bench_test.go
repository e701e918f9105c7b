package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// BenchmarkPredictConcurrent compares dynamic batching off, on by default
// (no wait), and on with a 1ms wait: 32 clients (16 per CPU) send
// single-text /v1/predict requests over TCP to a real model.
//
//	go test -run '^$' -bench PredictConcurrent -benchtime 3s ./gateway/
func BenchmarkPredictConcurrent(b *testing.B) {
	m, _ := trainReal(b, "support", "v1")
	for _, bc := range []struct {
		on   bool
		wait time.Duration
	}{{false, 0}, {true, 0}, {true, time.Millisecond}} {
		name := "dynamic=false"
		if bc.on {
			name = fmt.Sprintf("dynamic=true/wait=%v", bc.wait)
		}
		b.Run(name, func(b *testing.B) {
			ts := newTestServer(b, map[string]Model{"support": m}, func(c *Config) {
				c.DisableDynamicBatching = !bc.on
				c.BatchMaxWait = bc.wait
				c.DefaultRate, c.DefaultBurst = 1e9, 1e9
				c.BatchConcurrency = 2 // the model's session pool
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go ts.Run(ctx)
			for !ts.Ready() {
				time.Sleep(time.Millisecond)
			}
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			url := "http://" + ts.Addr() + "/v1/predict"
			b.SetParallelism(16) // 16 clients per CPU
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest("POST", url, strings.NewReader(`{"text":"my refund for the invoice has not arrived yet, please help"}`))
					req.Header.Set("X-API-Key", ts.keys["predictor"])
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.StopTimer()
			count, sum := histogram(b, ts.reg, "triage_gateway_batch_size", map[string]string{"model": "support"})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			if count > 0 {
				b.ReportMetric(sum/float64(count), "texts/call")
			}
		})
	}
}
