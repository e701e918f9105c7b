package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/triage-ml/triage/trainer"
)

// Training job states.
const (
	JobQueued    = "queued"
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
)

// TrainRequest is the JSON form of POST /v1/train. The multipart form takes
// the same fields as form values, with the data in a "file" part instead of
// data_path.
type TrainRequest struct {
	DataPath    string  `json:"data_path" doc:"CSV, TSV or JSONL file, relative to the server's data root"`
	TextColumn  string  `json:"text_column,omitempty" doc:"column (or JSON key) holding the text; default text"`
	LabelColumn string  `json:"label_column,omitempty" doc:"column (or JSON key) holding the label; default label"`
	Name        string  `json:"name" doc:"model name: the bundle is written as NAME-VERSION and, with activate, served as NAME"`
	Activate    bool    `json:"activate,omitempty" doc:"load the trained model into the serving set under name, replacing any model of that name"`
	Seed        *uint64 `json:"seed,omitempty" doc:"validation split and initialisation seed; default 42"`
	MaxEpochs   int     `json:"max_epochs,omitempty" doc:"epoch cap per hyper-parameter setting, 1..1000; default 20"`
}

// TrainAccepted is the 202 answer to POST /v1/train.
type TrainAccepted struct {
	ID       string `json:"id"`
	Status   string `json:"status" doc:"queued"`
	Location string `json:"location" doc:"where to poll the job"`
}

// TrainJob is GET /v1/train/{id}.
type TrainJob struct {
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Status      string         `json:"status" enum:"queued,running,succeeded,failed"`
	Stage       string         `json:"stage,omitempty" doc:"what a running job is doing"`
	Progress    float64        `json:"progress" doc:"0..1"`
	Source      string         `json:"source" doc:"data_path, or upload:FILENAME"`
	Activate    bool           `json:"activate"`
	Activated   bool           `json:"activated" doc:"the model now serves under name"`
	CreatedAt   time.Time      `json:"created_at"`
	StartedAt   *time.Time     `json:"started_at,omitempty"`
	FinishedAt  *time.Time     `json:"finished_at,omitempty"`
	Version     string         `json:"version,omitempty"`
	BundleDir   string         `json:"bundle_dir,omitempty" doc:"where the bundle was written on the server"`
	Metrics     *ModelMetrics  `json:"metrics,omitempty" doc:"validation figures of the trained model"`
	HyperParams map[string]any `json:"hyper_params,omitempty" doc:"the chosen hyper-parameters"`
	Error       string         `json:"error,omitempty" doc:"why the job failed"`
}

// job is one training run.
type job struct {
	opts     trainer.Options
	upload   string // uploaded file to keep or remove
	dataPath string // the server-side path, replaced by source in messages

	mu     sync.Mutex
	status TrainJob
}

func (j *job) snapshot() TrainJob {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.status
}

func (j *job) update(f func(*TrainJob)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	f(&j.status)
}

func (j *job) progress(p float64, stage string) {
	j.update(func(t *TrainJob) { t.Progress, t.Stage = max(t.Progress, p), stage })
}

// jobs is the queue and the record of recent jobs.
type jobs struct {
	queue chan *job
	mu    sync.Mutex
	byID  map[string]*job
	order []string
}

// keepJobs bounds how many jobs are remembered; the oldest finished ones go first.
const keepJobs = 200

func newJobs(queue int) *jobs {
	return &jobs{queue: make(chan *job, queue), byID: map[string]*job{}}
}

func (js *jobs) full() bool { return len(js.queue) == cap(js.queue) }

// enqueue records and queues j, or reports the queue full.
func (js *jobs) enqueue(j *job) bool {
	js.mu.Lock()
	defer js.mu.Unlock()
	select {
	case js.queue <- j:
	default:
		return false
	}
	js.byID[j.status.ID] = j
	js.order = append(js.order, j.status.ID)
	for i := 0; len(js.order) > keepJobs && i < len(js.order); {
		old := js.byID[js.order[i]].snapshot()
		if old.Status == JobSucceeded || old.Status == JobFailed {
			delete(js.byID, js.order[i])
			js.order = append(js.order[:i], js.order[i+1:]...)
			continue
		}
		i++
	}
	return true
}

func (js *jobs) get(id string) *job {
	js.mu.Lock()
	defer js.mu.Unlock()
	return js.byID[id]
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

func validName(s string) bool { return nameRE.MatchString(s) }

var dataExts = map[string]bool{".csv": true, ".tsv": true, ".jsonl": true, ".ndjson": true, ".json": true}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return "tj_" + hex.EncodeToString(b[:])
}

func (s *Server) handleTrain(c *fiber.Ctx) error {
	if s.cfg.ModelsDir == "" {
		return unavailable("training is disabled on this gateway (no models directory configured)")
	}
	if s.jobs.full() {
		return queueFull()
	}
	var req TrainRequest
	var fh *multipart.FileHeader
	ct := strings.ToLower(c.Get(fiber.HeaderContentType))
	if strings.HasPrefix(ct, fiber.MIMEMultipartForm) {
		var ae *apiError
		if req, fh, ae = s.parseTrainForm(c); ae != nil {
			return ae
		}
	} else {
		body, ae := s.jsonBody(c)
		if ae != nil {
			return ae
		}
		if ae := decodeStrict(body, &req); ae != nil {
			return ae
		}
	}
	id := newID()
	j, ae := s.newJob(id, req, fh != nil)
	if ae != nil {
		return ae
	}
	if fh != nil {
		ext := strings.ToLower(filepath.Ext(fh.Filename))
		if err := os.MkdirAll(s.cfg.UploadDir, 0o750); err != nil {
			return fmt.Errorf("upload dir: %w", err)
		}
		j.upload = filepath.Join(s.cfg.UploadDir, id+ext)
		if err := c.SaveFile(fh, j.upload); err != nil {
			return fmt.Errorf("save upload: %w", err)
		}
		j.opts.DataPath, j.dataPath = j.upload, j.upload
		j.status.Source = "upload:" + safeFilename(fh.Filename)
	}
	if !s.jobs.enqueue(j) {
		if j.upload != "" {
			s.removeAll(j.upload)
		}
		return queueFull()
	}
	s.log.Info("training job queued", "job", id, "name", req.Name, "source", j.status.Source, "key", c.Locals(localKeyName))
	loc := "/v1/train/" + id
	c.Location(loc)
	return c.Status(http.StatusAccepted).JSON(TrainAccepted{ID: id, Status: JobQueued, Location: loc})
}

func queueFull() *apiError {
	ae := unavailable("the training queue is full; retry later")
	ae.retryAfter = 30
	return ae
}

// parseTrainForm reads the multipart form of POST /v1/train.
func (s *Server) parseTrainForm(c *fiber.Ctx) (TrainRequest, *multipart.FileHeader, *apiError) {
	var req TrainRequest
	if ae := checkEncoding(c); ae != nil {
		return req, nil, ae
	}
	if n := len(c.Request().Body()); n > s.cfg.UploadLimit+64<<10 {
		return req, nil, tooLarge("upload is %d bytes; the limit is %d", n, s.cfg.UploadLimit)
	}
	form, err := c.MultipartForm()
	if err != nil {
		return req, nil, badRequest("", "malformed multipart body: %v", err)
	}
	for key, files := range form.File {
		if key != "file" {
			return req, nil, badRequest(key, "unknown form file %q: send the data as \"file\"", key)
		}
		if len(files) != 1 {
			return req, nil, badRequest(key, "send exactly one file")
		}
	}
	if len(form.File["file"]) == 0 {
		return req, nil, badRequest("file", "multipart training requests need a \"file\" part holding CSV, TSV or JSONL")
	}
	fh := form.File["file"][0]
	if fh.Size > int64(s.cfg.UploadLimit) {
		return req, nil, tooLarge("uploaded file is %d bytes; the limit is %d", fh.Size, s.cfg.UploadLimit)
	}
	if ext := strings.ToLower(filepath.Ext(fh.Filename)); !dataExts[ext] {
		return req, nil, unprocessable("file", "file %q: name it .csv, .tsv, .jsonl or .ndjson", safeFilename(fh.Filename))
	}
	for key, vals := range form.Value {
		if len(vals) != 1 {
			return req, nil, badRequest(key, "field %q given %d times", key, len(vals))
		}
		v := vals[0]
		switch key {
		case "text_column":
			req.TextColumn = v
		case "label_column":
			req.LabelColumn = v
		case "name":
			req.Name = v
		case "activate":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return req, nil, badRequest(key, "field %q: expected true or false, got %q", key, v)
			}
			req.Activate = b
		case "seed":
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return req, nil, badRequest(key, "field %q: expected a non-negative integer, got %q", key, v)
			}
			req.Seed = &n
		case "max_epochs":
			n, err := strconv.Atoi(v)
			if err != nil {
				return req, nil, badRequest(key, "field %q: expected an integer, got %q", key, v)
			}
			req.MaxEpochs = n
		case "data_path":
			return req, nil, badRequest(key, "give either data_path (JSON body) or an uploaded file, not both")
		default:
			return req, nil, badRequest(key, "unknown field %q", key)
		}
	}
	return req, fh, nil
}

// newJob validates req and prepares the trainer options.
func (s *Server) newJob(id string, req TrainRequest, upload bool) (*job, *apiError) {
	if req.Name == "" {
		return nil, badRequest("name", "name is required")
	}
	if !validName(req.Name) {
		return nil, unprocessable("name", "name %q: use 1-64 letters, digits, '_' or '-', starting with a letter or digit", req.Name)
	}
	for _, f := range []struct{ name, v string }{{"text_column", req.TextColumn}, {"label_column", req.LabelColumn}} {
		if len(f.v) > maxShortField {
			return nil, unprocessable(f.name, "%s is %d bytes; the limit is %d", f.name, len(f.v), maxShortField)
		}
	}
	if req.MaxEpochs < 0 || req.MaxEpochs > 1000 {
		return nil, unprocessable("max_epochs", "max_epochs %d: must be 1..1000", req.MaxEpochs)
	}
	j := &job{}
	if !upload {
		path, ae := s.resolveDataPath(req.DataPath)
		if ae != nil {
			return nil, ae
		}
		j.opts.DataPath, j.dataPath = path, path
	}
	seed := uint64(42)
	if req.Seed != nil {
		seed = *req.Seed
	}
	version := time.Now().UTC().Format("20060102T150405Z") + "-" + id[len(id)-6:]
	j.opts = trainer.Options{
		DataPath: j.opts.DataPath, TextColumn: req.TextColumn, LabelColumn: req.LabelColumn,
		OutDir: filepath.Join(s.cfg.ModelsDir, req.Name+"-"+version), Name: req.Name, Version: version,
		Seed: seed, MaxEpochs: req.MaxEpochs, Workers: s.cfg.TrainWorkers, Encoder: s.cfg.TrainEncoder,
	}
	j.status = TrainJob{ID: id, Name: req.Name, Status: JobQueued, Source: req.DataPath, Activate: req.Activate,
		CreatedAt: time.Now().UTC(), Version: version}
	return j, nil
}

// resolveDataPath maps a client's data_path to a regular file inside the
// data root, following symlinks: absolute paths, ".." and links leading out
// of the root are refused.
func (s *Server) resolveDataPath(rel string) (string, *apiError) {
	if s.cfg.DataRoot == "" {
		return "", badRequest("data_path", "server-side data paths are disabled on this gateway (no data root): upload the file as multipart/form-data")
	}
	if rel == "" {
		return "", badRequest("data_path", "data_path is required (or upload the file as multipart/form-data)")
	}
	if strings.ContainsRune(rel, 0) || filepath.IsAbs(rel) || !filepath.IsLocal(rel) {
		return "", badRequest("data_path", "data_path %q must be relative to the data root and stay inside it", rel)
	}
	if ext := strings.ToLower(filepath.Ext(rel)); !dataExts[ext] {
		return "", unprocessable("data_path", "data_path %q: use a .csv, .tsv, .jsonl or .ndjson file", rel)
	}
	root, err := filepath.EvalSymlinks(s.cfg.DataRoot)
	if err != nil {
		s.log.Error("data root unavailable", "root", s.cfg.DataRoot, "err", err)
		return "", unavailable("the server's data root is unavailable")
	}
	real, err := filepath.EvalSymlinks(filepath.Join(root, rel))
	if errors.Is(err, fs.ErrNotExist) {
		return "", unprocessable("data_path", "data_path %q: no such file under the data root", rel)
	}
	if err != nil {
		return "", unprocessable("data_path", "data_path %q: cannot be read", rel)
	}
	inside, err := filepath.Rel(root, real)
	if err != nil || !filepath.IsLocal(inside) {
		return "", badRequest("data_path", "data_path %q must be relative to the data root and stay inside it", rel)
	}
	if st, err := os.Stat(real); err != nil || !st.Mode().IsRegular() {
		return "", unprocessable("data_path", "data_path %q is not a regular file", rel)
	}
	return real, nil
}

// safeFilename keeps a client's file name printable and short for messages.
func safeFilename(name string) string {
	name = filepath.Base(strings.ReplaceAll(name, `\`, "/"))
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, name)
	if len(name) > 128 {
		name = name[:128]
	}
	return name
}

func (s *Server) handleTrainStatus(c *fiber.Ctx) error {
	j := s.jobs.get(c.Params("id"))
	if j == nil {
		return notFound("no training job %q", c.Params("id"))
	}
	return c.JSON(j.snapshot())
}

// trainLoop runs queued jobs one at a time until Close.
func (s *Server) trainLoop() {
	for {
		select {
		case <-s.ctx.Done():
			for {
				select {
				case j := <-s.jobs.queue:
					s.finish(j, errors.New("the gateway shut down before the job started"))
				default:
					return
				}
			}
		case j := <-s.jobs.queue:
			s.runJob(j)
		}
	}
}

func (s *Server) runJob(j *job) {
	id := j.snapshot().ID
	now := time.Now().UTC()
	j.update(func(t *TrainJob) { t.Status, t.StartedAt, t.Stage, t.Progress = JobRunning, &now, "loading data", 0.02 })
	log := s.log.With("job", id, "name", j.opts.Name)
	log.Info("training job started")

	grid := j.opts
	_ = grid.Validate() // fills the default grid, to count trials for progress
	trials := max(1, len(grid.Losses)*len(grid.LearningRates)*len(grid.L2s))
	if grid.Encoder != nil {
		trials *= max(1, len(grid.EncoderScales))
	}
	opts := j.opts
	opts.Logger = slog.New(&progressHandler{next: log.Handler(), job: j, trials: trials, done: new(atomic.Int64)})
	res, err := trainer.Train(s.ctx, opts)
	if err != nil {
		log.Error("training job failed", "err", err)
		s.finish(j, err)
		return
	}
	m := res.Manifest
	metrics := &ModelMetrics{Validation: validation(m.Metrics.Validation, false), TrainAccuracy: m.Metrics.TrainAcc}
	j.update(func(t *TrainJob) {
		t.Version, t.BundleDir, t.Metrics, t.HyperParams = m.Version, res.Dir, metrics, m.HyperParams
	})
	if j.snapshot().Activate {
		j.progress(0.97, "activating")
		model, err := s.cfg.OpenModel(res.Dir)
		if err != nil {
			log.Error("activate trained model", "dir", res.Dir, "err", err)
			s.finish(j, errors.New("activate: the trained bundle could not be loaded (see the server log)"))
			return
		}
		s.models.put(s.newEntry(j.opts.Name, model, true))
		j.update(func(t *TrainJob) { t.Activated = true })
		log.Info("model activated", "version", m.Version, "dir", res.Dir)
	}
	s.finish(j, nil)
}

// finish marks j succeeded or failed. Error text has server paths replaced
// by what the client sent.
func (s *Server) finish(j *job, err error) {
	now := time.Now().UTC()
	j.update(func(t *TrainJob) {
		t.FinishedAt = &now
		if err == nil {
			t.Status, t.Stage, t.Progress = JobSucceeded, "done", 1
			return
		}
		msg := err.Error()
		if errors.Is(err, context.Canceled) {
			msg = "cancelled: the gateway shut down"
		}
		if j.dataPath != "" {
			msg = strings.ReplaceAll(msg, j.dataPath, t.Source)
		}
		for _, p := range []string{j.opts.OutDir, s.cfg.ModelsDir, s.cfg.DataRoot, s.cfg.UploadDir} {
			if p != "" {
				msg = strings.ReplaceAll(msg, p, "<server>")
			}
		}
		t.Status, t.Stage, t.Error = JobFailed, "", msg
	})
	if err != nil && j.upload != "" {
		s.removeAll(j.upload) // kept only as the provenance of a trained bundle
	}
	s.metrics.trainJobs.WithLabelValues(j.snapshot().Status).Inc()
}

// progressHandler reads the trainer's log records to report progress:
// data loaded, featurised, each hyper-parameter trial done, bundle written.
type progressHandler struct {
	next   slog.Handler
	job    *job
	trials int
	done   *atomic.Int64
}

func (h *progressHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

func (h *progressHandler) Handle(ctx context.Context, r slog.Record) error {
	switch r.Message {
	case "data loaded":
		h.job.progress(0.10, "featurising")
	case "featurised":
		h.job.progress(0.20, "searching hyper-parameters")
	case "trial done":
		n := h.done.Add(1)
		h.job.progress(0.20+0.70*float64(n)/float64(h.trials), "searching hyper-parameters")
	case "model written":
		h.job.progress(0.95, "bundle written")
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *progressHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &progressHandler{next: h.next.WithAttrs(as), job: h.job, trials: h.trials, done: h.done}
}

func (h *progressHandler) WithGroup(name string) slog.Handler {
	return &progressHandler{next: h.next.WithGroup(name), job: h.job, trials: h.trials, done: h.done}
}
