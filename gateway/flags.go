package gateway

import (
	"flag"
	"fmt"
	"strconv"
	"time"
)

// Defaults, shared by RegisterFlags and Config's validation.
const (
	DefaultAddr          = "127.0.0.1:8080"
	DefaultRate          = 50
	DefaultBurst         = 100
	DefaultBodyLimit     = 4 << 20
	DefaultUploadLimit   = 64 << 20
	DefaultMaxBatch      = 256
	DefaultMaxTextBytes  = 64 << 10
	DefaultBatchMaxTexts = 256
	DefaultBatchMaxWait  = time.Duration(0) // an idle model runs a request at once
)

// RegisterFlags binds the gateway's settings to flags with their defaults.
// What the gateway shares with other roles (the text limit, the data root,
// the models it serves, the shutdown deadline) is set by the composition.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "http-addr", DefaultAddr, "REST API listen address")
	fs.StringVar(&c.KeysFile, "api-keys-file", "", "API keys file (YAML, or JSON if named .json) from `triage apikey add`; required unless --no-auth")
	fs.BoolVar(&c.DisableAuth, "no-auth", false, "serve every route without an API key (local development only)")
	fs.IntVar(&c.MaxBatch, "max-batch", DefaultMaxBatch, "most texts in one /v1/predict request")
	fs.IntVar(&c.BodyLimit, "body-limit", DefaultBodyLimit, "largest JSON request body in bytes (413 above)")
	fs.IntVar(&c.UploadLimit, "upload-limit", DefaultUploadLimit, "largest training-data upload in bytes (413 above)")
	fs.Var(invertedBool{&c.DisableDynamicBatching}, "dynamic-batching", "coalesce concurrent /v1/predict requests per model into one inference call (default true)")
	fs.IntVar(&c.BatchMaxTexts, "dynamic-batch-max", DefaultBatchMaxTexts, "most texts in one coalesced inference call")
	c.BatchMaxWait = DefaultBatchMaxWait
	fs.Func("dynamic-batch-wait", "extra wait for a coalesced batch to fill while the model is idle (default 0: a request that finds the model idle runs at once; requests arriving while it is busy are batched anyway)",
		func(s string) error {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				return fmt.Errorf("want a duration >= 0 such as 2ms")
			}
			c.BatchMaxWait = d
			return nil
		})
	c.DefaultRate = DefaultRate
	fs.Func("rate", "default per-key rate limit, requests/s (keys may override) (default 50)", func(s string) error {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("want a number of requests per second > 0")
		}
		c.DefaultRate = v
		return nil
	})
	fs.IntVar(&c.DefaultBurst, "burst", DefaultBurst, "default per-key burst (keys may override)")
}

// invertedBool is a boolean flag that sets the negation of its target
// (--dynamic-batching=false sets DisableDynamicBatching).
type invertedBool struct{ p *bool }

func (b invertedBool) IsBoolFlag() bool { return true }

func (b invertedBool) String() string {
	if b.p == nil {
		return "true"
	}
	return strconv.FormatBool(!*b.p)
}

func (b invertedBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*b.p = !v
	return nil
}
