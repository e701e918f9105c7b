// Package gateway is Triage's REST API: classify texts, inspect models,
// train and hot-swap models, and collect human feedback, over fiber v2.
//
// Routes (see /openapi.json for the full contract):
//
//	POST /v1/predict              scope predict   classify one text or a batch
//	GET  /v1/models               scope predict   loaded models, versions, labels, metrics
//	GET  /v1/models/{name}        scope predict   one model, with per-class metrics
//	GET  /v1/models/{name}/params scope predict   chosen hyper-parameters and the search log
//	POST /v1/train                scope train     queue a training job (JSON data_path or CSV/JSONL upload)
//	GET  /v1/train/{id}           scope train     job status, progress, metrics
//	POST /v1/feedback             scope feedback  a human label, handed to Config.Feedback
//	GET  /metrics                 scope admin     Prometheus metrics
//	GET  /healthz, /readyz, /openapi.json, /     open
//
// Callers authenticate with an API key (Authorization: Bearer or
// X-API-Key) checked against salted SHA-256 hashes (see APIKey); each key
// has scopes and its own token bucket. Every error is
// {"error":{"code","message"}}.
package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/triage-ml/triage/batch"
	"github.com/triage-ml/triage/trainer"
)

// FeedbackRecord is one human label, as handed to Config.Feedback.
type FeedbackRecord struct {
	ID        string `json:"id"`
	Text      string `json:"text"`
	Label     string `json:"label"`
	Annotator string `json:"annotator,omitempty"`
	Model     string `json:"model,omitempty"`
	Eval      bool   `json:"eval,omitempty"`
}

// Config configures a Server. Zero values take the documented defaults.
type Config struct {
	// Addr is where Run listens; default 127.0.0.1:8080.
	Addr string

	// Models is the initial serving set, by name. Unless OwnModels is set
	// the caller keeps ownership and the gateway never closes them (they
	// may be shared, e.g. with the Kafka consumer in `triage dev`); with
	// OwnModels the gateway closes each once no name serves it (replaced
	// through Serve, or on Close).
	Models    map[string]Model
	OwnModels bool

	// Feedback receives validated POST /v1/feedback bodies (wired to Kafka
	// by the caller). nil answers 503.
	Feedback func(ctx context.Context, fb FeedbackRecord) error
	// KafkaReady, when set, must report true for /readyz to be 200.
	KafkaReady func() bool

	// Keys are the accepted API keys (see LoadKeys). DisableAuth serves
	// every route without a key (local development only); one shared token
	// bucket then applies.
	Keys        []APIKey
	DisableAuth bool
	// KeysFile, when set, is loaded (LoadKeys) and its keys added to Keys.
	KeysFile string
	// DefaultRate (requests/s, default 50) and DefaultBurst (default 100)
	// apply to keys without their own rate/burst.
	DefaultRate  float64
	DefaultBurst int

	// BodyLimit caps JSON request bodies (default 4 MiB); UploadLimit caps
	// training-data uploads (default 64 MiB). Over either: 413.
	BodyLimit   int
	UploadLimit int
	// MaxBatch caps texts per /v1/predict request (default 256);
	// MaxTextBytes caps each text (default 64 KiB; over it: 422).
	MaxBatch     int
	MaxTextBytes int
	// PredictTimeout bounds one /v1/predict call (default 30s; then 503).
	PredictTimeout time.Duration

	// Dynamic batching (on unless DisableDynamicBatching): concurrent
	// requests for one model are coalesced into one inference call of up to
	// BatchMaxTexts texts (default 256): a request that finds a run slot
	// free runs at once, those arriving while all are busy run together
	// when one frees. BatchMaxWait > 0 adds a wait for a batch to fill
	// while a slot is free (default 0, and negative: none).
	// BatchConcurrency batches of a model run at once (default 1;
	// match the model's session pool).
	DisableDynamicBatching bool
	BatchMaxTexts          int
	BatchMaxWait           time.Duration
	BatchConcurrency       int

	// Jobs runs POST /v1/train jobs: the trainer role in this process
	// (*trainer.JobService) or in another one (*trainer.KafkaJobs). nil
	// answers /v1/train with 503.
	Jobs trainer.Jobs
	// DataRoot is the folder server-side training data paths (POST
	// /v1/train {"data_path"}) are relative to; "" disables them (uploads
	// still work). The trainer must see it at the same path.
	DataRoot string
	// UploadDir is where uploads are written for the trainer, which removes
	// them when the job ends; default Jobs' UploadDir() when it has one,
	// else trainer.DefaultUploadDir().
	UploadDir string

	// Review, when set, serves GET /v1/review; a label sent through POST
	// /v1/feedback takes the item off it.
	Review ReviewQueue
	// Drift, when set, serves GET /v1/drift and the web page's drift view.
	Drift DriftSource

	// Registry, when set, adds versions and aliases to GET /v1/models and
	// serves the admin routes that promote and roll back models.
	Registry Registry

	// Registerer receives the gateway's metrics; Gatherer serves /metrics.
	// Default: a fresh registry. A *prometheus.Registry serves as both.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer

	// ShutdownTimeout bounds the graceful drain when Run's context ends
	// (default 10s).
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
}

// Validate reports every problem with c as New would, without building a
// server: for checking flags before slower roles start.
func (c Config) Validate() error {
	if c.Registerer == nil && c.Gatherer == nil {
		reg := prometheus.NewRegistry()
		c.Registerer, c.Gatherer = reg, reg
	}
	return c.defaults()
}

func (c *Config) defaults() error {
	c.Addr = cmp.Or(c.Addr, DefaultAddr)
	c.DefaultRate = cmp.Or(c.DefaultRate, DefaultRate)
	c.DefaultBurst = cmp.Or(c.DefaultBurst, DefaultBurst)
	c.BodyLimit = cmp.Or(c.BodyLimit, DefaultBodyLimit)
	c.UploadLimit = cmp.Or(c.UploadLimit, DefaultUploadLimit)
	c.MaxBatch = cmp.Or(c.MaxBatch, DefaultMaxBatch)
	c.MaxTextBytes = cmp.Or(c.MaxTextBytes, DefaultMaxTextBytes)
	c.PredictTimeout = cmp.Or(c.PredictTimeout, 30*time.Second)
	c.BatchMaxTexts = cmp.Or(c.BatchMaxTexts, DefaultBatchMaxTexts)
	if c.BatchMaxWait == 0 {
		c.BatchMaxWait = DefaultBatchMaxWait
	}
	c.BatchConcurrency = cmp.Or(c.BatchConcurrency, 1)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, 10*time.Second)
	if c.UploadDir == "" {
		c.UploadDir = trainer.DefaultUploadDir()
		if j, ok := c.Jobs.(interface{ UploadDir() string }); ok {
			c.UploadDir = j.UploadDir()
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil && c.Gatherer == nil {
		reg := prometheus.NewRegistry()
		c.Registerer, c.Gatherer = reg, reg
	}
	if c.Gatherer == nil {
		g, ok := c.Registerer.(prometheus.Gatherer)
		if !ok {
			return errors.New("gateway: Registerer is not a Gatherer: set Config.Gatherer for /metrics")
		}
		c.Gatherer = g
	}
	if c.Registerer == nil {
		return errors.New("gateway: Gatherer set without Registerer")
	}
	var errs []error
	if c.DefaultRate < 0 || c.DefaultBurst < 1 {
		errs = append(errs, fmt.Errorf("rate %v / burst %d: need --rate > 0 and --burst >= 1", c.DefaultRate, c.DefaultBurst))
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"--body-limit", c.BodyLimit}, {"--upload-limit", c.UploadLimit}, {"--max-batch", c.MaxBatch},
		{"--max-text-bytes", c.MaxTextBytes}, {"--dynamic-batch-max", c.BatchMaxTexts}, {"batch concurrency (--sessions)", c.BatchConcurrency}} {
		if v.n < 1 {
			errs = append(errs, fmt.Errorf("%s %d: must be >= 1", v.name, v.n))
		}
	}
	switch {
	case c.KeysFile != "" && c.DisableAuth:
		errs = append(errs, errors.New("--api-keys-file and --no-auth exclude each other"))
	case c.KeysFile != "":
		keys, err := LoadKeys(c.KeysFile)
		if err != nil {
			errs = append(errs, err)
		}
		c.Keys = append(c.Keys, keys...)
	}
	// Counts below 1 are reported above; this adds the wait's bounds.
	if err := c.batchPolicy().Validate(); err != nil && c.BatchMaxTexts >= 1 {
		errs = append(errs, fmt.Errorf("dynamic batching: %w", err))
	}
	if len(c.Keys) == 0 && !c.DisableAuth {
		errs = append(errs, errors.New("no API keys: --api-keys-file is required (create one with `triage apikey add --file FILE --name NAME --scopes predict`), or pass --no-auth for local development"))
	}
	for name, m := range c.Models {
		if m == nil {
			errs = append(errs, fmt.Errorf("model %q is nil", name))
		} else if !reflect.TypeOf(m).Comparable() {
			errs = append(errs, fmt.Errorf("model %q: %T is not comparable (use a pointer)", name, m))
		} else if !validName(name) {
			errs = append(errs, fmt.Errorf("model name %q: use 1-64 letters, digits, '_' or '-'", name))
		}
	}
	return errors.Join(errs...)
}

// batchPolicy is the dynamic batching policy; a negative BatchMaxWait
// (no wait) is the policy's zero wait.
func (c *Config) batchPolicy() batch.Policy {
	return batch.Policy{MaxCount: c.BatchMaxTexts, MaxWait: max(c.BatchMaxWait, 0)}
}

// Server is the REST gateway.
type Server struct {
	cfg     Config
	log     *slog.Logger
	app     *fiber.App
	metrics *metrics
	keys    *keyring
	models  *servingSet
	owners  *owners
	ui      uiPage
	openapi []byte

	ctx       context.Context // ends on Close: batch runs
	cancel    context.CancelFunc
	workers   sync.WaitGroup
	listening atomic.Bool
	addr      atomic.Pointer[string]
	closeOnce sync.Once
	ran       atomic.Bool
}

// New builds the gateway: routes, metrics and batchers. Serve it with Run, or drive App() directly in tests; Close
// releases it (Run does so when it returns).
func New(cfg Config) (*Server, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("gateway metrics: %w", err)
	}
	ui, err := loadUI()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: m, models: newServingSet(), ui: ui,
		owners: &owners{count: map[Model]int{}, log: cfg.Logger},
		keys:   newKeyring(cfg.Keys, cfg.DisableAuth, cfg.DefaultRate, cfg.DefaultBurst)}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.DisableAuth {
		s.log.Warn("gateway API keys disabled: every route is open (local development only)")
	}
	for name, model := range cfg.Models {
		s.models.put(s.newEntry(name, model, cfg.OwnModels))
	}
	s.app = fiber.New(fiber.Config{
		AppName:               "triage-gateway",
		BodyLimit:             max(cfg.BodyLimit, cfg.UploadLimit+1<<20), // per-route limits are checked in handlers
		ErrorHandler:          s.handleAppError,
		DisableStartupMessage: true,
		ReadTimeout:           60 * time.Second,
		WriteTimeout:          60 * time.Second,
		IdleTimeout:           120 * time.Second,
		StrictRouting:         true,
		CaseSensitive:         true,
	})
	s.routes()
	if s.openapi, err = openAPIJSON(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// App is the fiber app, for tests (app.Test) and embedding.
func (s *Server) App() *fiber.App { return s.app }

// Addr is the address Run listens on, once it does ("" before).
func (s *Server) Addr() string {
	if p := s.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// Run listens on Config.Addr and serves until ctx ends, then drains
// in-flight requests (up to ShutdownTimeout) and releases the server.
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("gateway: Run called twice")
	}
	defer s.Close()
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("gateway listener on %s: %w", s.cfg.Addr, err)
	}
	addr := ln.Addr().String()
	s.addr.Store(&addr)
	errc := make(chan error, 1)
	go func() { errc <- s.app.Listener(ln) }()
	s.listening.Store(true)
	s.log.Info("gateway listening", "addr", addr, "models", s.models.names(), "dynamic_batching", !s.cfg.DisableDynamicBatching)
	select {
	case err := <-errc:
		s.listening.Store(false)
		return fmt.Errorf("gateway: serve: %w", err)
	case <-ctx.Done():
	}
	s.listening.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err = s.app.ShutdownWithContext(sctx)
	if serr := <-errc; serr != nil && err == nil {
		err = serr
	}
	s.log.Info("gateway stopped")
	if err != nil {
		return fmt.Errorf("gateway: shutdown: %w", err)
	}
	return nil
}

// Close retires every model (closing those the gateway owns) and waits for
// them.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.workers.Wait()
		for _, e := range s.models.clear() {
			<-e.stopped
		}
	})
	return nil
}

// Ready reports whether the gateway is listening and /readyz would say 200.
func (s *Server) Ready() bool {
	return s.listening.Load() && len(s.notReady()) == 0
}

// notReady lists why the gateway cannot serve.
func (s *Server) notReady() []string {
	var reasons []string
	if s.models.len() == 0 {
		reasons = append(reasons, "no models loaded")
	}
	if s.cfg.KafkaReady != nil && !s.cfg.KafkaReady() {
		reasons = append(reasons, "kafka not ready")
	}
	if s.ctx.Err() != nil {
		reasons = append(reasons, "shutting down")
	}
	return reasons
}

func (s *Server) newEntry(name string, m Model, owned bool) *entry {
	e := &entry{name: name, model: m, log: s.log, stopped: make(chan struct{})}
	if owned {
		s.owners.hold(m)
		e.onStop = func() { s.owners.release(m) }
	}
	if !s.cfg.DisableDynamicBatching {
		hist := s.metrics.batchSize.WithLabelValues(name)
		e.batcher = newBatcher(s.ctx, m, s.cfg.batchPolicy(), s.cfg.BatchConcurrency,
			func(n int) { hist.Observe(float64(n)) })
	}
	return e
}

// routes registers every route. Keep openapi.go in step: a test checks
// that both list the same routes.
func (s *Server) routes() {
	s.app.Use(s.securityHeaders)
	s.add(fiber.MethodGet, "/", "", s.handleUI)
	s.add(fiber.MethodGet, "/healthz", "", s.handleHealth)
	s.add(fiber.MethodGet, "/readyz", "", s.handleReady)
	s.add(fiber.MethodGet, "/openapi.json", "", s.handleOpenAPI)
	s.add(fiber.MethodGet, "/metrics", ScopeAdmin, adaptor.HTTPHandler(
		promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelError)})))
	s.add(fiber.MethodPost, "/v1/predict", ScopePredict, s.handlePredict)
	s.add(fiber.MethodGet, "/v1/models", ScopePredict, s.handleModels)
	s.add(fiber.MethodGet, "/v1/models/:name", ScopePredict, s.handleModel)
	s.add(fiber.MethodGet, "/v1/models/:name/params", ScopePredict, s.handleModelParams)
	s.add(fiber.MethodGet, "/v1/review", ScopeFeedback, s.handleReview)
	s.add(fiber.MethodGet, "/v1/drift", ScopePredict, s.handleDrift)
	s.add(fiber.MethodPost, "/v1/models/:name/promote", ScopeAdmin, s.handlePromote)
	s.add(fiber.MethodPost, "/v1/models/:name/rollback", ScopeAdmin, s.handleRollback)
	s.add(fiber.MethodPost, "/v1/train", ScopeTrain, s.handleTrain)
	s.add(fiber.MethodGet, "/v1/train/:id", ScopeTrain, s.handleTrainStatus)
	s.add(fiber.MethodPost, "/v1/feedback", ScopeFeedback, s.handleFeedback)
}

// add registers one route behind instrumentation and, when scope is set,
// authentication, scope check and rate limiting.
func (s *Server) add(method, path, scope string, h fiber.Handler) {
	handlers := []fiber.Handler{s.instrument(path)}
	if scope != "" {
		handlers = append(handlers, s.authorize(scope))
	}
	s.app.Add(method, path, append(handlers, h)...)
}

// instrument counts and times the route and turns errors (and panics) into
// the JSON error shape here, so the counted status is the one sent.
func (s *Server) instrument(route string) fiber.Handler {
	return func(c *fiber.Ctx) (err error) {
		start := time.Now()
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("handler panicked", "route", route, "panic", r, "stack", string(debug.Stack()))
				err = errInternal
			}
			if err != nil {
				err = s.respondError(c, route, err)
			}
			s.metrics.requests.WithLabelValues(route, strconv.Itoa(c.Response().StatusCode())).Inc()
			s.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		}()
		return c.Next()
	}
}

// respondError writes err as JSON, logging internal errors in full.
func (s *Server) respondError(c *fiber.Ctx, route string, err error) error {
	ae, internal := toAPIError(err)
	if internal {
		s.log.Error("request failed", "route", route, "method", c.Method(), "path", c.Path(), "err", err)
	}
	return writeError(c, ae)
}

// handleAppError catches errors outside instrumented routes: no route
// (404/405), oversized or malformed requests rejected by the HTTP server.
func (s *Server) handleAppError(c *fiber.Ctx, err error) error {
	werr := s.respondError(c, "unmatched", err)
	s.metrics.requests.WithLabelValues("unmatched", strconv.Itoa(c.Response().StatusCode())).Inc()
	return werr
}

func (s *Server) securityHeaders(c *fiber.Ctx) error {
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Next()
}

// HealthResponse is GET /healthz.
type HealthResponse struct {
	Status string `json:"status" doc:"always ok while the process serves"`
}

// ReadyResponse is GET /readyz when ready.
type ReadyResponse struct {
	Status string   `json:"status" doc:"ready"`
	Models []string `json:"models" doc:"names of the loaded models"`
}

func (s *Server) handleHealth(c *fiber.Ctx) error {
	return c.JSON(HealthResponse{Status: "ok"})
}

func (s *Server) handleReady(c *fiber.Ctx) error {
	if reasons := s.notReady(); len(reasons) > 0 {
		ae := unavailable("not ready: %v", reasons)
		ae.Code, ae.Reasons = "not_ready", reasons
		return ae
	}
	return c.JSON(ReadyResponse{Status: "ready", Models: s.models.names()})
}

func (s *Server) handleOpenAPI(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	c.Set(fiber.HeaderCacheControl, "public, max-age=300")
	return c.Send(s.openapi)
}

// jsonBody returns the raw request body within the JSON body limit (the
// HTTP server's own limit is the larger upload limit). Compressed bodies
// are refused: decompressing before the limit applies would let a small
// request expand without bound.
func (s *Server) jsonBody(c *fiber.Ctx) ([]byte, *apiError) {
	if ae := checkEncoding(c); ae != nil {
		return nil, ae
	}
	body := c.Request().Body()
	if n := len(body); n > s.cfg.BodyLimit {
		return nil, tooLarge("request body is %d bytes; the limit is %d", n, s.cfg.BodyLimit)
	}
	return body, nil
}

func checkEncoding(c *fiber.Ctx) *apiError {
	if enc := strings.TrimSpace(c.Get(fiber.HeaderContentEncoding)); enc != "" && !strings.EqualFold(enc, "identity") {
		return errorf(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "Content-Encoding %q is not accepted: send the body uncompressed", enc)
	}
	return nil
}

// removeAll is os.RemoveAll that logs failures.
func (s *Server) removeAll(path string) {
	if err := os.RemoveAll(path); err != nil {
		s.log.Warn("remove", "path", path, "err", err)
	}
}
