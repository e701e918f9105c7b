package tracking

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Local is a run log in a folder, used when no MLflow server is configured:
// DIR/<run-id>/run.json (a RunRecord) and the run's artifacts under
// DIR/<run-id>/artifacts/. Files are replaced atomically, so a reader never
// sees half a record.
type Local struct {
	dir string
	log *slog.Logger
}

var (
	_ Tracker = (*Local)(nil)
	_ Reader  = (*Local)(nil)
)

const runFile = "run.json"

// NewLocal returns the run log in dir (created on the first run). logger
// (nil: slog.Default()) reports run files List skips.
func NewLocal(dir string, logger *slog.Logger) *Local {
	return &Local{dir: dir, log: cmp.Or(logger, slog.Default())}
}

// Dir is the run log's folder.
func (l *Local) Dir() string { return l.dir }

// newRunID returns 32 hex digits, the shape of MLflow's run ids.
func newRunID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// StartRun creates the run's folder and record.
func (l *Local) StartRun(ctx context.Context, spec RunSpec) (Run, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if spec.Experiment == "" {
		return nil, fmt.Errorf("start run: the experiment (model name) is required: %w", ErrInvalid)
	}
	if spec.ParentID != "" {
		if err := checkID(spec.ParentID); err != nil {
			return nil, fmt.Errorf("start run: parent: %w", err)
		}
	}
	id := newRunID()
	runDir := filepath.Join(l.dir, id)
	abs, err := filepath.Abs(filepath.Join(runDir, "artifacts"))
	if err != nil {
		return nil, fmt.Errorf("start run: %w", err)
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("start run: %w", err)
	}
	r := &localRun{dir: runDir, rec: RunRecord{
		ID: id, Experiment: spec.Experiment, Name: spec.Name, ParentID: spec.ParentID, Status: StatusRunning,
		StartTime: time.Now().UTC(), Params: map[string]string{}, Tags: maps.Clone(spec.Tags),
		Metrics: map[string][]MetricPoint{}, ArtifactURI: "file://" + filepath.ToSlash(abs),
	}}
	if r.rec.Tags == nil {
		r.rec.Tags = map[string]string{}
	}
	if err := r.write(); err != nil {
		return nil, fmt.Errorf("start run: %w", err)
	}
	return r, nil
}

// List reads every run.json, newest first. Files that cannot be read are
// skipped with a warning, so one damaged run does not hide the others.
func (l *Local) List(ctx context.Context, experiment string, limit int) ([]RunRecord, error) {
	ents, err := os.ReadDir(l.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []RunRecord{}, nil // no run yet
	}
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	out := []RunRecord{}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !e.IsDir() || checkID(e.Name()) != nil {
			continue
		}
		rec, err := readRecord(filepath.Join(l.dir, e.Name(), runFile))
		if errors.Is(err, fs.ErrNotExist) {
			continue // a run being created, or not a run folder
		}
		if err != nil {
			l.log.Warn("skipping an unreadable run record", "err", err)
			continue
		}
		if experiment == "" || rec.Experiment == experiment {
			out = append(out, rec)
		}
	}
	slices.SortFunc(out, func(a, b RunRecord) int {
		return cmp.Or(b.StartTime.Compare(a.StartTime), strings.Compare(a.ID, b.ID))
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Get reads one run.
func (l *Local) Get(ctx context.Context, id string) (RunRecord, error) {
	if err := ctx.Err(); err != nil {
		return RunRecord{}, err
	}
	if err := checkID(id); err != nil {
		return RunRecord{}, err
	}
	rec, err := readRecord(filepath.Join(l.dir, id, runFile))
	if errors.Is(err, fs.ErrNotExist) {
		return RunRecord{}, fmt.Errorf("run %s: %w in %s", id, ErrNotFound, l.dir)
	}
	return rec, err
}

func readRecord(path string) (RunRecord, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return RunRecord{}, err
	}
	var rec RunRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return RunRecord{}, fmt.Errorf("%s: %w", path, err)
	}
	return rec, nil
}

// localRun serialises its updates: trials log from several goroutines.
type localRun struct {
	dir string
	mu  sync.Mutex
	rec RunRecord
}

func (r *localRun) ID() string { return r.rec.ID }

// update applies f (which must check before it changes anything) and
// rewrites run.json.
func (r *localRun) update(ctx context.Context, f func(rec *RunRecord) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := f(&r.rec); err != nil {
		return err
	}
	return r.write()
}

// write replaces run.json atomically (temporary file, then rename).
func (r *localRun) write() error {
	b, err := json.MarshalIndent(r.rec, "", "  ")
	if err != nil {
		return fmt.Errorf("run %s: encode: %w", r.rec.ID, err)
	}
	tmp, err := os.CreateTemp(r.dir, runFile+".*")
	if err != nil {
		return fmt.Errorf("run %s: %w", r.rec.ID, err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	merr := tmp.Chmod(0o644) // CreateTemp makes it 0600; readers may be other users
	cerr := tmp.Close()
	if err := errors.Join(werr, merr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("run %s: write: %w", r.rec.ID, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(r.dir, runFile)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("run %s: %w", r.rec.ID, err)
	}
	return nil
}

func (r *localRun) LogParams(ctx context.Context, params map[string]string) error {
	return r.update(ctx, func(rec *RunRecord) error {
		for k, v := range params {
			if old, ok := rec.Params[k]; ok && old != v {
				return fmt.Errorf("run %s: param %q is already %q, cannot change it to %q: %w", rec.ID, k, old, v, ErrInvalid)
			}
		}
		maps.Copy(rec.Params, params)
		return nil
	})
}

func (r *localRun) LogMetric(ctx context.Context, key string, value float64, step int64) error {
	if key == "" {
		return fmt.Errorf("log metric: empty key: %w", ErrInvalid)
	}
	return r.update(ctx, func(rec *RunRecord) error {
		rec.Metrics[key] = append(rec.Metrics[key], MetricPoint{Step: step, Value: value, Time: time.Now().UTC()})
		return nil
	})
}

func (r *localRun) SetTag(ctx context.Context, key, value string) error {
	if key == "" {
		return fmt.Errorf("set tag: empty key: %w", ErrInvalid)
	}
	return r.update(ctx, func(rec *RunRecord) error {
		rec.Tags[key] = value
		return nil
	})
}

func (r *localRun) End(ctx context.Context, status string) error {
	if err := checkStatus(status); err != nil {
		return err
	}
	return r.update(ctx, func(rec *RunRecord) error {
		now := time.Now().UTC()
		rec.Status, rec.EndTime = status, &now
		return nil
	})
}

// LogArtifacts copies localDir into the run's artifacts. Files are
// hard-linked when they can be (same file system, and bundles are never
// modified in place), so keeping a bundle per run costs no space; the
// trainer may then delete its working copy.
func (r *localRun) LogArtifacts(ctx context.Context, localDir, artifactPath string) error {
	ap, err := cleanArtifactPath(artifactPath)
	if err != nil {
		return err
	}
	files, err := walkFiles(localDir)
	if err != nil {
		return fmt.Errorf("log artifacts: %w", err)
	}
	root := filepath.Join(r.dir, "artifacts", filepath.FromSlash(ap))
	var added []Artifact
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		st, err := os.Stat(f.path)
		if err != nil {
			return fmt.Errorf("log artifacts: %w", err)
		}
		if err := linkOrCopy(f.path, filepath.Join(root, filepath.FromSlash(f.rel))); err != nil {
			return fmt.Errorf("log artifacts: %w", err)
		}
		added = append(added, Artifact{Path: strings.TrimPrefix(ap+"/"+f.rel, "/"), Size: st.Size()})
	}
	return r.update(ctx, func(rec *RunRecord) error {
		for _, a := range added {
			i := slices.IndexFunc(rec.Artifacts, func(b Artifact) bool { return b.Path == a.Path })
			if i >= 0 {
				rec.Artifacts[i] = a
			} else {
				rec.Artifacts = append(rec.Artifacts, a)
			}
		}
		slices.SortFunc(rec.Artifacts, func(a, b Artifact) int { return strings.Compare(a.Path, b.Path) })
		return nil
	})
}

func linkOrCopy(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Remove(dst); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if os.Link(src, dst) == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(dst), filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	_, cerr := io.Copy(out, in)
	if err := errors.Join(cerr, out.Chmod(0o644), out.Close()); err != nil {
		os.Remove(out.Name())
		return err
	}
	if err := os.Rename(out.Name(), dst); err != nil {
		os.Remove(out.Name())
		return err
	}
	return nil
}
