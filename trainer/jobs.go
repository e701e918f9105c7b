package trainer

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/triage-ml/triage/internal/telemetry"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/triage-ml/triage/internal/scoring"
	"github.com/triage-ml/triage/registry"
)

// Training job states.
const (
	JobQueued    = "queued"
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
)

// Job stages after training (Progress stages come first).
const (
	StageRegistering = "registering"
	StageActivating  = "activating"
	StageDone        = "done"
)

// Sentinel errors of Jobs.
var (
	ErrQueueFull    = errors.New("the training queue is full")
	ErrJobNotFound  = errors.New("no such training job")
	ErrInvalidJob   = errors.New("invalid training job")
	ErrDuplicateJob = errors.New("training job already submitted")
	ErrStopped      = errors.New("the trainer has shut down")
)

// JobRequest asks for one training run. It travels as JSON on Kafka.
type JobRequest struct {
	ID          string  `json:"id"` // Submit assigns one (NewJobID) when empty
	Name        string  `json:"name"`
	DataPath    string  `json:"data_path"` // the file to train on, as the trainer process sees it
	TextColumn  string  `json:"text_column,omitempty"`
	LabelColumn string  `json:"label_column,omitempty"`
	Activate    bool    `json:"activate,omitempty"`
	Seed        *uint64 `json:"seed,omitempty"` // default 42
	MaxEpochs   int     `json:"max_epochs,omitempty"`
	// FineTune asks for a fine-tuned transformer (JobsConfig.FineTune)
	// instead of a head on frozen features; MaxEpochs then caps its epochs.
	FineTune bool `json:"fine_tune,omitempty"`
	// Source is what the client named: the data_path it sent, or
	// "upload:FILENAME"; messages show it instead of DataPath.
	Source string `json:"source"`
	// Upload: DataPath is a temporary upload, directly inside the jobs
	// service's UploadDir, which the service removes when the job ends.
	Upload      bool      `json:"upload,omitempty"`
	RequestedBy string    `json:"requested_by,omitempty"`
	CreatedAt   time.Time `json:"created_at"` // Submit sets it when zero
}

// JobMetrics are the validation figures of a trained model.
type JobMetrics struct {
	Validation    scoring.Report `json:"validation"`
	TrainAccuracy float64        `json:"train_accuracy"`
}

// JobStatus is where a job stands. It travels as JSON on Kafka.
type JobStatus struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Status    string     `json:"status"`          // JobQueued, JobRunning, JobSucceeded or JobFailed
	Stage     string     `json:"stage,omitempty"` // a Progress stage, StageRegistering, StageActivating, StageDone
	Progress  float64    `json:"progress"`        // 0..1
	Source    string     `json:"source"`
	Activate  bool       `json:"activate"`
	Activated bool       `json:"activated"` // promoted in the registry
	CreatedAt time.Time  `json:"created_at"`
	StartedAt *time.Time `json:"started_at,omitempty"`
	// FinishedAt is set once Status is JobSucceeded or JobFailed.
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Version    string     `json:"version,omitempty"` // the registry's version id
	// BundleDir is where the job trained the bundle (WorkDir/NAME-ID); it
	// is removed once Register has returned (the registry keeps its copy).
	BundleDir   string         `json:"bundle_dir,omitempty"`
	Metrics     *JobMetrics    `json:"metrics,omitempty"`
	HyperParams map[string]any `json:"hyper_params,omitempty"`
	Error       string         `json:"error,omitempty"` // why it failed, without server paths
}

// Done reports whether the job has finished, either way.
func (s JobStatus) Done() bool { return s.Status == JobSucceeded || s.Status == JobFailed }

// Jobs accepts training jobs and reports on them: *JobService in the
// trainer's process, *KafkaJobs from any other.
type Jobs interface {
	// Submit queues r and returns its queued status. Errors wrap
	// ErrQueueFull, ErrInvalidJob, ErrDuplicateJob or ErrStopped, or are
	// transport failures. On error an upload stays the caller's to remove.
	Submit(ctx context.Context, r JobRequest) (JobStatus, error)
	// Get returns a job's latest status, or an error wrapping ErrJobNotFound.
	Get(ctx context.Context, id string) (JobStatus, error)
}

// Lineage is what Register learns about a trained bundle.
type Lineage struct {
	JobID       string `json:"job_id"`
	Source      string `json:"source"`    // see JobRequest.Source
	DataPath    string `json:"data_path"` // an upload's is gone once the job ends
	DataSHA256  string `json:"data_sha256"`
	TextColumn  string `json:"text_column"`
	LabelColumn string `json:"label_column"`
	Rows        int    `json:"rows"`
	Seed        uint64 `json:"seed"`
	// BundleVersion is the version written in the bundle's manifest.
	BundleVersion string `json:"bundle_version"`
	// Metrics: val_accuracy, val_macro_f1, val_n, train_accuracy.
	Metrics     map[string]float64 `json:"metrics"`
	HyperParams map[string]any     `json:"hyper_params"`
	RequestedBy string             `json:"requested_by,omitempty"`
	CodeVersion string             `json:"code_version,omitempty"` // VCS revision of this binary, when known
}

// Registry is l as the model registry records lineage; RequestedBy is
// its Register's who.
func (l Lineage) Registry() registry.Lineage {
	return registry.Lineage{DataPath: l.DataPath, DataSHA256: l.DataSHA256, Metrics: l.Metrics,
		HyperParams: l.HyperParams, CodeVersion: l.CodeVersion}
}

// JobsConfig configures a JobService. Zero values take the defaults noted.
type JobsConfig struct {
	Queue   int // jobs that may wait (default 4); more are refused with ErrQueueFull
	Workers int // jobs trained at once (default 1)
	// Threads is each job's trainer parallelism (Options.Workers); default
	// half the CPUs shared among Workers, leaving the rest to serving.
	Threads int
	// WorkDir is where bundles are trained, as NAME-ID/, before Register.
	WorkDir string
	// UploadDir holds uploads (JobRequest.Upload); default
	// DefaultUploadDir(). With Kafka it must be a folder the gateway's
	// process sees at the same path (a shared volume).
	UploadDir string
	// DataRoots, when set, are the only folders non-upload data may be read
	// from (symlinks resolved): requests arriving over Kafka name any path.
	DataRoots []string
	// Encoder, when set, makes jobs train hybrid heads (n-grams + encoder).
	Encoder *EncoderSource
	// FineTune is how jobs asking for fine-tuning run; nil refuses them,
	// with FineTuneUnavailable as the reason.
	FineTune            *FineTune
	FineTuneUnavailable error

	// Register stores a trained bundle as a new version of name and returns
	// the version id. It must copy (or move) the bundle: the service removes
	// bundleDir once Register returns. Required.
	Register func(ctx context.Context, name, bundleDir string, l Lineage) (version string, err error)
	// Promote makes version serve under name (jobs with Activate). Required.
	Promote func(ctx context.Context, name, version, who, why string) error

	// Kafka, when set, makes Run also take requests from Kafka and publish
	// every status change (see KafkaConfig).
	Kafka *KafkaConfig

	Logger     *slog.Logger
	Registerer prometheus.Registerer // default: a fresh registry
}

// registerTimeout bounds Register plus Promote. They run on after shutdown
// has begun, so a job is never cut between registration and promotion.
const registerTimeout = 2 * time.Minute

// keepJobs bounds how many jobs are remembered; the oldest finished go first.
const keepJobs = 200

// trainShare is the part of a job's progress that training takes; the rest
// is registering and activating.
const trainShare = 0.9

// DefaultUploadDir is where uploads wait for the trainer unless configured:
// fine in one process, not across machines.
func DefaultUploadDir() string { return filepath.Join(os.TempDir(), "triage-uploads") }

// NewJobID returns a fresh job id, tj_ and 16 hex digits.
func NewJobID() string {
	var b [8]byte
	rand.Read(b[:])
	return "tj_" + hex.EncodeToString(b[:])
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	idRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// checkRequest fills r's defaults and checks what needs no file system.
func checkRequest(r *JobRequest, uploadDir string) error {
	if r.ID == "" {
		r.ID = NewJobID()
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now().UTC()
	}
	var errs []error
	if !idRE.MatchString(r.ID) {
		errs = append(errs, fmt.Errorf("id %q: use 1-64 letters, digits, '_' or '-'", r.ID))
	}
	if !nameRE.MatchString(r.Name) {
		errs = append(errs, fmt.Errorf("name %q: use 1-64 letters, digits, '_' or '-', starting with a letter or digit", r.Name))
	}
	if r.DataPath == "" || strings.ContainsRune(r.DataPath, 0) {
		errs = append(errs, errors.New("data path is required"))
	}
	if r.MaxEpochs < 0 || r.MaxEpochs > 1000 {
		errs = append(errs, fmt.Errorf("max epochs %d: must be 1..1000 (0: default)", r.MaxEpochs))
	}
	if r.Upload && r.DataPath != "" && !inUploadDir(r.DataPath, uploadDir) {
		// The service deletes uploads: never anything outside the folder.
		errs = append(errs, errors.New("upload is not in the trainer's uploads folder"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w %s: %w", ErrInvalidJob, r.ID, err)
	}
	return nil
}

// inUploadDir reports whether path names a file directly inside dir.
func inUploadDir(path, dir string) bool {
	p, err1 := filepath.Abs(path)
	d, err2 := filepath.Abs(dir)
	return err1 == nil && err2 == nil && dir != "" && filepath.Dir(p) == d && filepath.Base(p) != "." && filepath.Base(p) != ".."
}

func queuedStatus(r JobRequest) JobStatus {
	return JobStatus{ID: r.ID, Name: r.Name, Status: JobQueued, Source: r.Source, Activate: r.Activate, CreatedAt: r.CreatedAt}
}

// job is one training run.
type job struct {
	req JobRequest

	mu     sync.Mutex
	status JobStatus
}

func (j *job) snapshot() JobStatus {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.status
}

// JobService queues and runs training jobs: train, Register, Promote.
type JobService struct {
	cfg     JobsConfig
	log     *slog.Logger
	metrics *jobMetrics
	queue   chan *job
	slot    chan struct{} // a queued job was taken: room for another

	mu      sync.Mutex
	byID    map[string]*job
	order   []string
	stopped bool

	kafka   *kafkaService // nil without JobsConfig.Kafka
	ran     atomic.Bool
	running atomic.Bool
}

var _ Jobs = (*JobService)(nil)

// NewJobService checks cfg and registers the metrics; Run runs the jobs.
func NewJobService(cfg JobsConfig) (*JobService, error) {
	cfg.Queue = cmp.Or(cfg.Queue, 4)
	cfg.Workers = cmp.Or(cfg.Workers, 1)
	cfg.Threads = cmp.Or(cfg.Threads, max(1, runtime.GOMAXPROCS(0)/2/max(cfg.Workers, 1)))
	cfg.UploadDir = cmp.Or(cfg.UploadDir, DefaultUploadDir())
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	var errs []error
	if cfg.Queue < 1 || cfg.Workers < 1 || cfg.Threads < 1 {
		errs = append(errs, fmt.Errorf("queue %d, workers %d, threads %d: each must be >= 1", cfg.Queue, cfg.Workers, cfg.Threads))
	}
	if cfg.WorkDir == "" {
		errs = append(errs, errors.New("a work directory for training bundles is required"))
	}
	if cfg.Register == nil || cfg.Promote == nil {
		errs = append(errs, errors.New("Register and Promote (the model registry) are required"))
	}
	if cfg.Kafka != nil {
		if err := cfg.Kafka.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("trainer jobs config: %w", err)
	}
	for _, d := range []string{cfg.WorkDir, cfg.UploadDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("trainer jobs: %w", err)
		}
	}
	m, err := newJobMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("trainer jobs metrics: %w", err)
	}
	s := &JobService{cfg: cfg, log: cfg.Logger.With("role", "trainer"), metrics: m,
		queue: make(chan *job, cfg.Queue), slot: make(chan struct{}, 1), byID: map[string]*job{}}
	if cfg.Kafka != nil {
		if s.kafka, err = newKafkaService(*cfg.Kafka, s.log); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// UploadDir is where this service expects uploads (JobRequest.Upload).
func (s *JobService) UploadDir() string { return s.cfg.UploadDir }

// Ready reports whether Run is running jobs (and, with Kafka, has set up
// its topics and clients).
func (s *JobService) Ready() bool { return s.running.Load() }

// Submit queues r; see Jobs.
func (s *JobService) Submit(_ context.Context, r JobRequest) (JobStatus, error) {
	if err := checkRequest(&r, s.cfg.UploadDir); err != nil {
		return JobStatus{}, err
	}
	if err := s.checkData(r); err != nil {
		return JobStatus{}, fmt.Errorf("%w %s: %w", ErrInvalidJob, r.ID, err)
	}
	if err := s.checkFineTune(r); err != nil {
		return JobStatus{}, err
	}
	j := &job{req: r, status: queuedStatus(r)}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.stopped:
		return JobStatus{}, ErrStopped
	case s.byID[r.ID] != nil:
		return JobStatus{}, fmt.Errorf("%w: %s", ErrDuplicateJob, r.ID)
	}
	select {
	case s.queue <- j:
	default:
		return JobStatus{}, ErrQueueFull
	}
	s.remember(j)
	s.metrics.queued.Set(float64(len(s.queue)))
	s.publish(j)
	s.log.Info("training job queued", "job", r.ID, "name", r.Name, "source", r.Source, "activate", r.Activate, "by", r.RequestedBy)
	return queuedStatus(r), nil // a worker may have started it already
}

// checkFineTune refuses fine-tuning jobs this service cannot run.
func (s *JobService) checkFineTune(r JobRequest) error {
	if !r.FineTune || s.cfg.FineTune != nil {
		return nil
	}
	why := s.cfg.FineTuneUnavailable
	if why == nil {
		why = errors.New("no fine-tuning setup")
	}
	return fmt.Errorf("%w %s: this trainer cannot fine-tune: %w", ErrInvalidJob, r.ID, why)
}

// checkData keeps non-upload data inside DataRoots, when they are set.
func (s *JobService) checkData(r JobRequest) error {
	if r.Upload || len(s.cfg.DataRoots) == 0 {
		return nil
	}
	real, err := filepath.EvalSymlinks(r.DataPath)
	if err != nil {
		return fmt.Errorf("data %s cannot be read", r.Source)
	}
	for _, root := range s.cfg.DataRoots {
		if rr, err := filepath.EvalSymlinks(root); err == nil {
			if rel, err := filepath.Rel(rr, real); err == nil && filepath.IsLocal(rel) {
				return nil
			}
		}
	}
	return fmt.Errorf("data %s is outside the trainer's data roots", r.Source)
}

// remember records j for Get, forgetting the oldest finished jobs beyond
// keepJobs. Callers hold s.mu.
func (s *JobService) remember(j *job) {
	s.byID[j.req.ID] = j
	s.order = append(s.order, j.req.ID)
	for i := 0; len(s.order) > keepJobs && i < len(s.order); {
		if s.byID[s.order[i]].snapshot().Done() {
			delete(s.byID, s.order[i])
			s.order = append(s.order[:i], s.order[i+1:]...)
			continue
		}
		i++
	}
}

// Get returns a job's status; see Jobs.
func (s *JobService) Get(_ context.Context, id string) (JobStatus, error) {
	s.mu.Lock()
	j := s.byID[id]
	s.mu.Unlock()
	if j == nil {
		return JobStatus{}, fmt.Errorf("job %q: %w", id, ErrJobNotFound)
	}
	return j.snapshot(), nil
}

// update changes j's status and publishes the result, in order.
func (s *JobService) update(j *job, f func(*JobStatus)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	f(&j.status)
	s.publishLocked(j)
}

func (s *JobService) publish(j *job) {
	j.mu.Lock()
	defer j.mu.Unlock()
	s.publishLocked(j)
}

// publishLocked sends j's status to Kafka, if configured; j.mu is held so
// a job's statuses are produced in the order they happened.
func (s *JobService) publishLocked(j *job) {
	if s.kafka != nil {
		s.kafka.publish(j.status)
	}
}

// Run runs queued jobs (and, with Kafka, takes requests from it) until
// ctx ends. Then a running job's training is cancelled (registration and
// promotion in progress complete) and every unfinished job ends failed,
// saying why. It returns nil on a clean shutdown, or why it could not start.
func (s *JobService) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("trainer jobs: Run called twice")
	}
	var consumer sync.WaitGroup
	if s.kafka != nil {
		if err := s.kafka.start(ctx); err != nil {
			s.shutdown()
			s.kafka.close()
			return err
		}
		s.mu.Lock()
		for _, id := range s.order { // submitted before Run: publish now the topics exist
			s.publish(s.byID[id])
		}
		s.mu.Unlock()
		consumer.Go(func() { s.kafka.consume(ctx, s) })
	}
	s.running.Store(true)
	s.log.Info("trainer running", "workers", s.cfg.Workers, "queue", s.cfg.Queue, "kafka", s.kafka != nil)
	var workers sync.WaitGroup
	for range s.cfg.Workers {
		workers.Go(func() { s.work(ctx) })
	}
	<-ctx.Done()
	s.running.Store(false)
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	consumer.Wait()
	workers.Wait()
	s.shutdown()
	if s.kafka != nil {
		s.kafka.close()
	}
	s.log.Info("trainer stopped")
	return nil
}

// shutdown fails the jobs still queued. Submit refuses new ones by now.
func (s *JobService) shutdown() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	for {
		select {
		case j := <-s.queue:
			s.finish(j, errNotStarted)
		default:
			s.metrics.queued.Set(0)
			return
		}
	}
}

var (
	errNotStarted = errors.New("the trainer shut down before the job started; submit it again")
	errCancelled  = errors.New("cancelled: the trainer shut down before the job finished; submit it again")
)

func (s *JobService) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.queue:
			s.metrics.queued.Set(float64(len(s.queue)))
			select {
			case s.slot <- struct{}{}:
			default:
			}
			s.runJob(ctx, j)
		}
	}
}

// runJob trains j into WorkDir/NAME-ID, registers the bundle and, with
// Activate, promotes it. Any failure ends the job failed with the reason.
func (s *JobService) runJob(ctx context.Context, j *job) {
	r := j.req
	if ctx.Err() != nil {
		s.finish(j, errNotStarted)
		return
	}
	log := s.log.With("job", r.ID, "name", r.Name)
	start := time.Now().UTC()
	dir := filepath.Join(s.cfg.WorkDir, r.Name+"-"+r.ID)
	s.update(j, func(st *JobStatus) {
		st.Status, st.StartedAt, st.Stage, st.Progress, st.BundleDir = JobRunning, &start, StageLoading, 0, dir
	})
	log.Info("training job started", "dir", dir)
	seed := uint64(42)
	if r.Seed != nil {
		seed = *r.Seed
	}
	opts := Options{
		DataPath: r.DataPath, TextColumn: r.TextColumn, LabelColumn: r.LabelColumn, OutDir: dir, Name: r.Name,
		Version: start.Format("20060102T150405Z") + "-" + r.ID[max(0, len(r.ID)-6):],
		Seed:    seed, MaxEpochs: r.MaxEpochs, Workers: s.cfg.Threads, Encoder: s.cfg.Encoder, Logger: log,
		Progress: func(p Progress) {
			s.update(j, func(st *JobStatus) { st.Stage, st.Progress = p.Stage, trainShare*p.Fraction })
		},
	}
	if r.FineTune {
		if err := s.checkFineTune(r); err != nil { // Submit checked; the setup does not change
			s.finish(j, err)
			return
		}
		ft := *s.cfg.FineTune
		if r.MaxEpochs > 0 {
			ft.Epochs = min(r.MaxEpochs, 100)
		}
		opts.FineTune, opts.Encoder, opts.MaxEpochs = &ft, nil, 0
	}
	res, err := Train(ctx, opts)
	if err != nil {
		s.removeAll(dir)
		if ctx.Err() != nil {
			err = errCancelled
		}
		s.finish(j, err)
		return
	}
	m := res.Manifest
	v := m.Metrics.Validation
	metrics := &JobMetrics{Validation: v, TrainAccuracy: m.Metrics.TrainAcc}
	s.update(j, func(st *JobStatus) {
		st.Metrics, st.HyperParams, st.Stage, st.Progress = metrics, m.HyperParams, StageRegistering, 0.92
	})

	// Registration and promotion finish even when shutdown begins, so a job
	// never stops between the two.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), registerTimeout)
	defer cancel()
	version, err := s.cfg.Register(rctx, r.Name, dir, Lineage{
		JobID: r.ID, Source: r.Source, DataPath: r.DataPath, DataSHA256: m.Training.DataSHA256,
		TextColumn: m.Training.TextColumn, LabelColumn: m.Training.LabelColumn, Rows: m.Training.Rows, Seed: seed,
		BundleVersion: m.Version, HyperParams: m.HyperParams, RequestedBy: r.RequestedBy, CodeVersion: codeVersion(),
		Metrics: map[string]float64{"val_accuracy": v.Accuracy, "val_macro_f1": v.MacroF1, "val_n": float64(v.N),
			"train_accuracy": m.Metrics.TrainAcc},
	})
	s.removeAll(dir) // the registry has its own copy, or none
	if err != nil {
		s.finish(j, fmt.Errorf("register the trained bundle: %w", err))
		return
	}
	s.update(j, func(st *JobStatus) { st.Version = version })
	log.Info("trained bundle registered", "version", version, "val_accuracy", v.Accuracy, "val_macro_f1", v.MacroF1)
	if r.Activate {
		s.update(j, func(st *JobStatus) { st.Stage, st.Progress = StageActivating, 0.96 })
		who := cmp.Or(r.RequestedBy, "trainer")
		if err := s.cfg.Promote(rctx, r.Name, version, who, "training job "+r.ID); err != nil {
			s.finish(j, fmt.Errorf("activate: version %s is registered but was not promoted: %w", version, err))
			return
		}
		s.update(j, func(st *JobStatus) { st.Activated = true })
		log.Info("trained version promoted", "version", version)
	}
	s.finish(j, nil)
}

// finish marks j succeeded or failed (err says why) and removes its upload.
func (s *JobService) finish(j *job, err error) {
	now := time.Now().UTC()
	s.update(j, func(st *JobStatus) {
		st.FinishedAt = &now
		if err == nil {
			st.Status, st.Stage, st.Progress = JobSucceeded, StageDone, 1
			return
		}
		st.Status, st.Stage, st.Error = JobFailed, "", s.publicError(j.req, err)
	})
	if j.req.Upload && inUploadDir(j.req.DataPath, s.cfg.UploadDir) {
		s.removeAll(j.req.DataPath)
	}
	st := j.snapshot()
	s.metrics.jobs.WithLabelValues(st.Status).Inc()
	if err != nil {
		s.log.Warn("training job failed", "job", st.ID, "name", st.Name, "err", err)
	} else {
		s.log.Info("training job succeeded", "job", st.ID, "name", st.Name, "version", st.Version, "activated", st.Activated)
	}
}

// publicError is err's text with server paths replaced by what the client
// sent (the data path) or <server>.
func (s *JobService) publicError(r JobRequest, err error) string {
	msg := err.Error()
	if r.DataPath != "" {
		msg = strings.ReplaceAll(msg, r.DataPath, cmp.Or(r.Source, "<data>"))
	}
	for _, p := range append([]string{s.cfg.WorkDir, s.cfg.UploadDir}, s.cfg.DataRoots...) {
		if len(p) > 1 {
			msg = strings.ReplaceAll(msg, p, "<server>")
		}
	}
	return msg
}

// reject records a request that could not be queued (an invalid Kafka
// message) as a failed job, so whoever sent it can see why.
func (s *JobService) reject(r JobRequest, err error) {
	if r.CreatedAt.IsZero() {
		r.CreatedAt = time.Now().UTC()
	}
	j := &job{req: r, status: queuedStatus(r)}
	s.mu.Lock()
	if s.byID[r.ID] != nil {
		s.mu.Unlock()
		return
	}
	s.remember(j)
	s.mu.Unlock()
	s.finish(j, err)
}

func (s *JobService) removeAll(path string) {
	if err := os.RemoveAll(path); err != nil {
		s.log.Warn("remove", "path", path, "err", err)
	}
}

// codeVersion is the VCS revision this binary was built from, if recorded.
func codeVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, kv := range bi.Settings {
		switch kv.Key {
		case "vcs.revision":
			rev = kv.Value
		case "vcs.modified":
			if kv.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}

type jobMetrics struct {
	jobs   *prometheus.CounterVec // outcome
	queued prometheus.Gauge
}

func newJobMetrics(reg prometheus.Registerer) (*jobMetrics, error) {
	m := &jobMetrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "triage_trainer_jobs_total", Help: "Training jobs finished, by outcome (succeeded or failed).",
		}, []string{"outcome"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "triage_trainer_queue_jobs", Help: "Training jobs waiting for a worker.",
		}),
	}
	var err error
	m.jobs = telemetry.Register(reg, m.jobs, &err)
	m.queued = telemetry.Register(reg, m.queued, &err)
	for _, o := range []string{JobSucceeded, JobFailed} {
		m.jobs.WithLabelValues(o) // both series exist from the start
	}
	return m, err
}
