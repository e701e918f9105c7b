package gateway

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/triage-ml/triage/trainer"
)

// Training job states, as GET /v1/train/{id} reports them.
const (
	JobQueued    = trainer.JobQueued
	JobRunning   = trainer.JobRunning
	JobSucceeded = trainer.JobSucceeded
	JobFailed    = trainer.JobFailed
)

// TrainRequest is the JSON form of POST /v1/train. The multipart form takes
// the same fields as form values, with the data in a "file" part instead of
// data_path.
type TrainRequest struct {
	DataPath    string  `json:"data_path" doc:"CSV, TSV or JSONL file, relative to the server's data root"`
	TextColumn  string  `json:"text_column,omitempty" doc:"column (or JSON key) holding the text; default text"`
	LabelColumn string  `json:"label_column,omitempty" doc:"column (or JSON key) holding the label; default label"`
	Name        string  `json:"name" doc:"model name: the trained bundle is registered as a new version of NAME"`
	Activate    bool    `json:"activate,omitempty" doc:"promote the new version to serve as name once it is registered"`
	Seed        *uint64 `json:"seed,omitempty" doc:"validation split and initialisation seed; default 42"`
	MaxEpochs   int     `json:"max_epochs,omitempty" doc:"epoch cap per hyper-parameter setting, 1..1000; default 20 (with fine_tune: the fine-tuning epoch cap, at most 100)"`
	FineTune    bool    `json:"fine_tune,omitempty" doc:"fine-tune the trainer's BERT checkpoint (PyTorch) instead of training a head on frozen features; 422 when the trainer cannot fine-tune"`
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
	Activated   bool           `json:"activated" doc:"the new version was promoted to serve as name"`
	CreatedAt   time.Time      `json:"created_at"`
	StartedAt   *time.Time     `json:"started_at,omitempty"`
	FinishedAt  *time.Time     `json:"finished_at,omitempty"`
	Version     string         `json:"version,omitempty" doc:"the registry version of the trained model"`
	BundleDir   string         `json:"bundle_dir,omitempty" doc:"where the trainer wrote the bundle before registering it"`
	Metrics     *ModelMetrics  `json:"metrics,omitempty" doc:"validation figures of the trained model"`
	HyperParams map[string]any `json:"hyper_params,omitempty" doc:"the chosen hyper-parameters"`
	Error       string         `json:"error,omitempty" doc:"why the job failed"`
}

// nameRE is the registry's rule for model names (lower case), so a job
// whose name the registry would refuse fails here, before any training.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

func validName(s string) bool { return nameRE.MatchString(s) }

var dataExts = map[string]bool{".csv": true, ".tsv": true, ".jsonl": true, ".ndjson": true, ".json": true}

// errNoTrainer answers /v1/train on a gateway without Config.Jobs.
func errNoTrainer() *apiError {
	return unavailable("no trainer role in this process and no Kafka link to one: training is unavailable on this gateway " +
		"(run the trainer role here, as `triage dev` does, or give the gateway the Kafka brokers of a trainer)")
}

// submitTimeout bounds handing a job to the trainer (a Kafka produce).
const submitTimeout = 15 * time.Second

func (s *Server) handleTrain(c *fiber.Ctx) error {
	if s.cfg.Jobs == nil {
		return errNoTrainer()
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
	r, ae := s.jobRequest(req, fh != nil)
	if ae != nil {
		return ae
	}
	r.ID, r.RequestedBy = trainer.NewJobID(), s.who(c)
	if fh != nil {
		// The trainer reads the upload from UploadDir and removes it when
		// the job ends; until Submit succeeds it is ours to remove.
		dir, err := filepath.Abs(s.cfg.UploadDir)
		if err != nil {
			return fmt.Errorf("upload dir: %w", err)
		}
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("upload dir: %w", err)
		}
		r.DataPath = filepath.Join(dir, r.ID+strings.ToLower(filepath.Ext(fh.Filename)))
		if err := c.SaveFile(fh, r.DataPath); err != nil {
			s.removeAll(r.DataPath)
			return fmt.Errorf("save upload: %w", err)
		}
		r.Source, r.Upload = "upload:"+safeFilename(fh.Filename), true
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), submitTimeout)
	defer cancel()
	st, err := s.cfg.Jobs.Submit(ctx, r)
	if err != nil {
		if r.Upload {
			s.removeAll(r.DataPath)
		}
		return s.jobsError(err)
	}
	s.log.Info("training job submitted", "job", st.ID, "name", r.Name, "source", r.Source, "activate", r.Activate, "by", r.RequestedBy)
	loc := "/v1/train/" + st.ID
	c.Location(loc)
	return c.Status(http.StatusAccepted).JSON(TrainAccepted{ID: st.ID, Status: st.Status, Location: loc})
}

// jobsError maps the trainer's refusals to answers; transport failures
// are logged and answered 503.
func (s *Server) jobsError(err error) error {
	switch {
	case errors.Is(err, trainer.ErrQueueFull):
		return queueFull()
	case errors.Is(err, trainer.ErrStopped):
		ae := unavailable("the trainer is shutting down; retry later")
		ae.retryAfter = 30
		return ae
	case errors.Is(err, trainer.ErrInvalidJob):
		// The request passed the gateway's checks; the trainer's own
		// settings (its data roots, its uploads folder) refused it.
		s.log.Warn("the trainer refused a training job", "err", err)
		return unprocessable("", "the trainer refused the job: %v", err)
	case errors.Is(err, trainer.ErrJobNotFound), errors.Is(err, trainer.ErrDuplicateJob):
		return err // internal: ids are the gateway's own
	}
	s.log.Error("training service unreachable", "err", err)
	ae := unavailable("the training service is unavailable; retry later")
	ae.retryAfter = 10
	return ae
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
		case "fine_tune":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return req, nil, badRequest(key, "field %q: expected true or false, got %q", key, v)
			}
			req.FineTune = b
		case "data_path":
			return req, nil, badRequest(key, "give either data_path (JSON body) or an uploaded file, not both")
		default:
			return req, nil, badRequest(key, "unknown field %q", key)
		}
	}
	return req, fh, nil
}

// jobRequest validates req into a trainer request (without the data of
// an upload, which the caller adds).
func (s *Server) jobRequest(req TrainRequest, upload bool) (trainer.JobRequest, *apiError) {
	var r trainer.JobRequest
	if req.Name == "" {
		return r, badRequest("name", "name is required")
	}
	if !validName(req.Name) {
		return r, unprocessable("name", "name %q: use 1-64 letters, digits, '_' or '-', starting with a letter or digit", req.Name)
	}
	for _, f := range []struct{ name, v string }{{"text_column", req.TextColumn}, {"label_column", req.LabelColumn}} {
		if len(f.v) > maxShortField {
			return r, unprocessable(f.name, "%s is %d bytes; the limit is %d", f.name, len(f.v), maxShortField)
		}
	}
	if req.MaxEpochs < 0 || req.MaxEpochs > 1000 {
		return r, unprocessable("max_epochs", "max_epochs %d: must be 1..1000", req.MaxEpochs)
	}
	r = trainer.JobRequest{Name: req.Name, TextColumn: req.TextColumn, LabelColumn: req.LabelColumn,
		Activate: req.Activate, Seed: req.Seed, MaxEpochs: req.MaxEpochs, FineTune: req.FineTune, Source: req.DataPath}
	if !upload {
		path, ae := s.resolveDataPath(req.DataPath)
		if ae != nil {
			return r, ae
		}
		r.DataPath = path
	}
	return r, nil
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
	// Absolute, so a trainer in another process (same volume, another
	// working directory) finds the file too.
	root, err := filepath.Abs(s.cfg.DataRoot)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
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
	if s.cfg.Jobs == nil {
		return errNoTrainer()
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), submitTimeout)
	defer cancel()
	st, err := s.cfg.Jobs.Get(ctx, c.Params("id"))
	if errors.Is(err, trainer.ErrJobNotFound) {
		return notFound("no training job %q", c.Params("id"))
	}
	if err != nil {
		return s.jobsError(err)
	}
	return c.JSON(trainJob(st))
}

// trainJob is a trainer status in the shape of GET /v1/train/{id}.
func trainJob(st trainer.JobStatus) TrainJob {
	j := TrainJob{ID: st.ID, Name: st.Name, Status: st.Status, Stage: st.Stage, Progress: st.Progress, Source: st.Source,
		Activate: st.Activate, Activated: st.Activated, CreatedAt: st.CreatedAt, StartedAt: st.StartedAt,
		FinishedAt: st.FinishedAt, Version: st.Version, BundleDir: st.BundleDir, HyperParams: st.HyperParams, Error: st.Error}
	if m := st.Metrics; m != nil {
		j.Metrics = &ModelMetrics{Validation: validation(m.Validation, false), TrainAccuracy: m.TrainAccuracy}
	}
	return j
}
