package elastic

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults; a zero field in Config means its default.
const (
	DefaultBufferDocs      = 10_000
	DefaultFlushInterval   = 2 * time.Second
	DefaultFlushBytes      = 2 << 20
	DefaultMaxAttempts     = 5
	DefaultRetryInitial    = 250 * time.Millisecond
	DefaultRetryMax        = 15 * time.Second
	DefaultRequestTimeout  = 10 * time.Second
	DefaultShutdownTimeout = 5 * time.Second
	DefaultService         = "triage"
)

// Config configures a Sink. Only URLs is required; Enabled says whether
// shipping is on at all.
type Config struct {
	URLs               []string // Elasticsearch nodes, e.g. http://127.0.0.1:9200; none = disabled
	Username, Password string   // HTTP basic auth
	APIKey             string   // base64 "id:key", instead of Username/Password

	FlushInterval time.Duration // a partial bulk request is sent after this long
	FlushBytes    int           // a bulk request is sent once it holds this many bytes
	// BufferDocs bounds the documents held in memory while Elasticsearch is
	// slow or down; more are dropped. One failed bulk request's documents,
	// waiting to be resent, come on top.
	BufferDocs int

	// MaxAttempts bounds how often one document is sent before it counts as
	// failed (request errors, 429/5xx items). Mapping errors fail at once.
	MaxAttempts int
	// RetryInitial and RetryMax bound the exponential backoff between
	// reconnection attempts after a failure.
	RetryInitial, RetryMax time.Duration
	// RequestTimeout bounds one bulk or template request.
	RequestTimeout time.Duration
	// ShutdownTimeout bounds the final flush once Run's context ends.
	ShutdownTimeout time.Duration

	// Service is service.name in shipped log documents.
	Service string
	// Transport replaces the HTTP transport (tests); nil = a tuned clone of
	// http.DefaultTransport.
	Transport http.RoundTripper
}

// urlList is a comma-separated flag value.
type urlList struct{ urls *[]string }

func (u urlList) String() string {
	if u.urls == nil {
		return ""
	}
	return strings.Join(*u.urls, ",")
}

func (u urlList) Set(s string) error {
	*u.urls = nil
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*u.urls = append(*u.urls, p)
		}
	}
	return nil
}

// RegisterFlags binds the sink's settings to fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Var(urlList{&c.URLs}, "elasticsearch-url", `Elasticsearch URLs for drift windows, prediction samples and logs, comma-separated ("" = off)`)
	fs.StringVar(&c.Username, "elasticsearch-username", "", "Elasticsearch basic-auth user")
	fs.StringVar(&c.Password, "elasticsearch-password", "", "Elasticsearch basic-auth password")
	fs.StringVar(&c.APIKey, "elasticsearch-api-key", "", "Elasticsearch API key (base64 id:key), instead of user and password")
	fs.IntVar(&c.BufferDocs, "elasticsearch-buffer", DefaultBufferDocs, "documents held in memory while Elasticsearch is slow or down; more are dropped and counted")
	fs.DurationVar(&c.FlushInterval, "elasticsearch-flush-interval", DefaultFlushInterval, "a partial bulk request is sent after this long")
}

// Enabled reports whether any URL is set.
func (c *Config) Enabled() bool { return len(c.URLs) > 0 }

// Validate fills defaults for zero fields and reports every problem at once,
// each saying what to change. A config without URLs is valid (disabled).
func (c *Config) Validate() error {
	c.FlushInterval = cmp.Or(c.FlushInterval, DefaultFlushInterval)
	c.FlushBytes = cmp.Or(c.FlushBytes, DefaultFlushBytes)
	c.BufferDocs = cmp.Or(c.BufferDocs, DefaultBufferDocs)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultMaxAttempts)
	c.RetryInitial = cmp.Or(c.RetryInitial, DefaultRetryInitial)
	c.RetryMax = cmp.Or(c.RetryMax, DefaultRetryMax)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, DefaultRequestTimeout)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.Service = cmp.Or(c.Service, DefaultService)

	var errs []error
	for _, raw := range c.URLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--elasticsearch-url %q: want http://host:port or https://host:port", raw))
		}
	}
	if c.APIKey != "" && (c.Username != "" || c.Password != "") {
		errs = append(errs, errors.New("elasticsearch: set --elasticsearch-api-key or --elasticsearch-username/--elasticsearch-password, not both"))
	}
	if c.Password != "" && c.Username == "" {
		errs = append(errs, errors.New("elasticsearch: --elasticsearch-password without --elasticsearch-username: set the user too"))
	}
	if c.BufferDocs < 1 {
		errs = append(errs, fmt.Errorf("--elasticsearch-buffer %d: must be at least 1 document", c.BufferDocs))
	}
	if c.FlushInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("--elasticsearch-flush-interval %v: must be at least 10ms", c.FlushInterval))
	}
	if c.FlushBytes < 1024 {
		errs = append(errs, fmt.Errorf("elasticsearch: FlushBytes %d: must be at least 1024", c.FlushBytes))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("elasticsearch: MaxAttempts %d: must be at least 1", c.MaxAttempts))
	}
	if c.RetryInitial <= 0 || c.RetryMax < c.RetryInitial {
		errs = append(errs, fmt.Errorf("elasticsearch: retry backoff %v..%v: want 0 < RetryInitial <= RetryMax", c.RetryInitial, c.RetryMax))
	}
	if c.RequestTimeout <= 0 || c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("elasticsearch: RequestTimeout %v and ShutdownTimeout %v must be positive", c.RequestTimeout, c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}
