package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// RestConfig is an open-loop load test of one POST /v1/predict server:
// vegeta sends requests at each fixed rate whether or not earlier ones have
// been answered, so queueing shows up in the latencies (a closed-loop
// client would slow down instead).
type RestConfig struct {
	URL        string      // the predict endpoint
	Header     http.Header // e.g. the API key
	Data       string      // file whose texts become request bodies, cycled
	TextColumn string
	Model      string // the body's "model" field ("" leaves it out)
	// Get sends body-less GETs to URL instead (Data unused): the floor a
	// constant handler such as /healthz sets for this driver on this
	// machine, to read the predict figures against.
	Get bool

	Rates    []int         // offered requests/s, in order
	Duration time.Duration // measured time per rate
	Warmup   time.Duration // unmeasured load at the same rate before each
	Timeout  time.Duration // per request; a timed-out request is a failure
	// MaxP99 bounds p99 for a rate to count as sustained (see Sustained).
	MaxP99 time.Duration
	// StopAfter stops once this many rates in a row were not sustained
	// (0 runs every rate): past saturation, more load only queues.
	StopAfter int

	OnRate func(RestRate) // after each rate, for printing as it goes
}

// RestRate is one rate's result.
type RestRate struct {
	Rate       int     `json:"rate"`       // offered requests/s
	Requests   uint64  `json:"requests"`   // sent while measuring
	Success    float64 `json:"success"`    // share of 2xx answers
	Throughput float64 `json:"throughput"` // 2xx answers per second, waiting for stragglers included
	// Latency quantiles of every measured request (failures included), ms.
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	// Sustained: throughput >= 95% of the offered rate, success >= 99.9%
	// and p99 <= MaxP99. Saturation is the highest sustained rate.
	Sustained bool     `json:"sustained"`
	Errors    []string `json:"errors,omitempty"` // distinct, at most 5
}

// Saturation is the highest sustained rate among rows (0 if none).
func Saturation(rows []RestRate) int {
	best := 0
	for _, r := range rows {
		if r.Sustained {
			best = max(best, r.Rate)
		}
	}
	return best
}

// Rest drives cfg.URL at each rate in turn and returns one row per rate run.
func Rest(ctx context.Context, cfg RestConfig) ([]RestRate, error) {
	if cfg.URL == "" || len(cfg.Rates) == 0 || cfg.Duration <= 0 {
		return nil, errors.New("bench rest: need a URL, rates and a duration")
	}
	header := cfg.Header.Clone()
	if header == nil {
		header = http.Header{}
	}
	targeter := func(t *vegeta.Target) error {
		t.Method, t.URL, t.Header = http.MethodGet, cfg.URL, header
		return nil
	}
	if !cfg.Get {
		bodies, err := requestBodies(cfg)
		if err != nil {
			return nil, err
		}
		header.Set("Content-Type", "application/json")
		var next atomic.Uint64
		targeter = func(t *vegeta.Target) error {
			i := next.Add(1) - 1
			t.Method, t.URL, t.Header, t.Body = http.MethodPost, cfg.URL, header, bodies[i%uint64(len(bodies))]
			return nil
		}
	}
	// Open loop: no worker cap, so a slow server gets more concurrent
	// requests rather than fewer sent. An attacker stops for good after one
	// attack, so each gets a new one; they share a client, so measurement
	// reuses the warm-up's connections.
	client := &http.Client{Timeout: cmpOr(cfg.Timeout, 10*time.Second), Transport: &http.Transport{
		MaxIdleConnsPerHost: 10000, IdleConnTimeout: time.Minute, DisableCompression: true}}
	attack := func(rate int, d time.Duration, name string) <-chan *vegeta.Result {
		atk := vegeta.NewAttacker(vegeta.Client(client), vegeta.Workers(64))
		return atk.Attack(vegeta.Targeter(targeter), vegeta.Rate{Freq: rate, Per: time.Second}, d, name)
	}
	var rows []RestRate
	misses := 0
	for _, rate := range cfg.Rates {
		if cfg.Warmup > 0 {
			for range attack(rate, cfg.Warmup, "warmup") {
			}
		}
		if err := ctx.Err(); err != nil {
			return rows, err
		}
		var m vegeta.Metrics
		lat := make([]time.Duration, 0, int(float64(rate)*cfg.Duration.Seconds())+16)
		for res := range attack(rate, cfg.Duration, "measure") {
			m.Add(res)
			lat = append(lat, res.Latency)
		}
		m.Close()
		row := RestRate{Rate: rate, Requests: m.Requests, Success: m.Success, Throughput: m.Throughput}
		if len(lat) > 0 {
			slices.Sort(lat)
			q := func(p float64) float64 { return float64(lat[min(int(p*float64(len(lat))), len(lat)-1)]) / 1e6 }
			row.P50, row.P99, row.P999, row.Max = q(0.50), q(0.99), q(0.999), float64(lat[len(lat)-1])/1e6
		}
		maxP99 := cmpOr(cfg.MaxP99, 100*time.Millisecond)
		row.Sustained = row.Throughput >= 0.95*float64(rate) && row.Success >= 0.999 &&
			row.P99 <= float64(maxP99)/1e6
		row.Errors = m.Errors[:min(len(m.Errors), 5)]
		rows = append(rows, row)
		if cfg.OnRate != nil {
			cfg.OnRate(row)
		}
		if misses = misses + 1; row.Sustained {
			misses = 0
		}
		if cfg.StopAfter > 0 && misses >= cfg.StopAfter {
			break
		}
		if err := ctx.Err(); err != nil {
			return rows, err
		}
	}
	return rows, nil
}

// requestBodies encodes one predict body per text of cfg.Data once, so the
// driver spends its share of the (shared) CPUs on sending, not on JSON.
func requestBodies(cfg RestConfig) ([][]byte, error) {
	texts, err := loadTexts(cfg.Data, cfg.TextColumn)
	if err != nil {
		return nil, err
	}
	if len(texts) == 0 {
		return nil, fmt.Errorf("bench rest: no texts in %s", cfg.Data)
	}
	bodies := make([][]byte, len(texts))
	for i, t := range texts {
		req := map[string]string{"text": t}
		if cfg.Model != "" {
			req["model"] = cfg.Model
		}
		if bodies[i], err = json.Marshal(req); err != nil {
			return nil, err
		}
	}
	return bodies, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
