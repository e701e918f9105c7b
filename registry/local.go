package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/triage-ml/triage/internal/filelock"

	"github.com/triage-ml/triage/bundle"
)

// Files and directories inside ROOT/NAME.
const (
	versionFile = "version.json"
	historyFile = "history.jsonl"
	lockFile    = ".lock"
	loadsDir    = "loads"
	tmpPrefix   = ".tmp-" // never a valid name or version, so listings skip it
)

// Local is a Store kept in a local directory:
//
//	ROOT/NAME/vN/                     bundle files + version.json, immutable
//	ROOT/NAME/history.jsonl           alias moves, append-only: the only record of aliases
//	ROOT/NAME/loads/vN/INSTANCE.json  latest LoadReport per serving instance
//	ROOT/NAME/.lock                   flock that serialises writers across processes
//
// Every file is either renamed into place complete or appended to, so reads
// take no lock. A Local is safe for concurrent use by goroutines and by
// several processes sharing ROOT.
type Local struct {
	root   string
	verify func(dir string) error
	now    func() time.Time

	mu    sync.Mutex
	locks map[string]chan struct{} // per model; a channel so waiting honours ctx
}

var _ Store = (*Local)(nil)

// OpenLocal opens the registry at root, creating the directory if missing.
func OpenLocal(root string, opts Options) (*Local, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open registry %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("open registry %s: %w", root, err)
	}
	s := &Local{root: abs, verify: opts.Verify, now: opts.Now, locks: map[string]chan struct{}{}}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Root is the registry's absolute root directory.
func (s *Local) Root() string { return s.root }

// Models lists the models that have at least one version, sorted.
func (s *Local) Models(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("list models: %w", err)
	}
	names := []string{}
	for _, e := range entries { // ReadDir sorts by name
		if !e.IsDir() || checkName("model", e.Name()) != nil {
			continue
		}
		nums, err := s.versionNums(e.Name())
		if err != nil {
			return nil, fmt.Errorf("list models: %w", err)
		}
		if len(nums) > 0 {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Register adds the bundle in bundleDir as the model's next version, or
// returns the existing version when one has the same content hash (so
// re-registering is idempotent). The copy's model.json is rewritten to carry
// name and the new version id.
func (s *Local) Register(ctx context.Context, name, bundleDir string, l Lineage, who string) (Version, error) {
	v, err := s.register(ctx, name, bundleDir, l, who)
	if err != nil {
		return Version{}, fmt.Errorf("register %s: %w", name, err)
	}
	return v, nil
}

func (s *Local) register(ctx context.Context, name, src string, l Lineage, who string) (Version, error) {
	if err := checkName("model", name); err != nil {
		return Version{}, err
	}
	// Everything that can refuse the bundle runs before anything is created.
	b, err := bundle.Load(src)
	if err != nil {
		return Version{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	files, err := contentFiles(b.Manifest.Files)
	if err != nil {
		return Version{}, err
	}
	hash := contentHash(b.Manifest.Files)

	dir := s.modelDir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Version{}, err
	}
	unlock, err := s.lock(ctx, name)
	if err != nil {
		return Version{}, err
	}
	defer unlock()
	cleanTemp(dir)

	nums, err := s.versionNums(name)
	if err != nil {
		return Version{}, err
	}
	next := 1
	for _, n := range nums {
		v, err := s.get(name, "v"+strconv.Itoa(n))
		if err != nil {
			return Version{}, err
		}
		if v.Hash == hash {
			return v, nil
		}
		next = n + 1 // nums is ascending
	}
	id := "v" + strconv.Itoa(next)

	// Build the version in a temp dir and rename it into place: the rename
	// is the commit point, so a crash never leaves a half-registered vN.
	tmp, err := os.MkdirTemp(dir, tmpPrefix)
	if err != nil {
		return Version{}, err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	for _, f := range files {
		if err := copyChecked(filepath.Join(src, f), filepath.Join(tmp, f), b.Manifest.Files[f]); err != nil {
			return Version{}, err
		}
	}
	m := b.Manifest // the verified manifest, not a re-read that could have changed since
	m.Name, m.Version = name, id
	if err := writeJSON(filepath.Join(tmp, bundle.ManifestFile), m); err != nil {
		return Version{}, err
	}
	if _, err := bundle.Load(tmp); err != nil {
		return Version{}, fmt.Errorf("copy of %s does not load: %w", src, err)
	}
	v := Version{Model: name, Version: id, Hash: hash, CreatedAt: s.now().UTC(), CreatedBy: who, Lineage: l}
	rec := versionRecord{v.Model, v.Version, v.Hash, v.CreatedAt, v.CreatedBy, v.Lineage}
	if err := writeJSON(filepath.Join(tmp, versionFile), rec); err != nil {
		return Version{}, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return Version{}, err
	}
	if err := filelock.SyncDir(tmp); err != nil {
		return Version{}, err
	}
	v.Dir = filepath.Join(dir, id)
	if err := os.Rename(tmp, v.Dir); err != nil {
		return Version{}, err
	}
	if err := filelock.SyncDir(dir); err != nil {
		return Version{}, err
	}
	return v, nil
}

// versionRecord is version.json: a Version without the fields that depend on
// where the registry lives (Dir) or change after registration (Loads).
type versionRecord struct {
	Model     string    `json:"model"`
	Version   string    `json:"version"`
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	Lineage   Lineage   `json:"lineage"`
}

// Versions lists a model's versions, v1 first.
func (s *Local) Versions(ctx context.Context, name string) ([]Version, error) {
	if err := checkName("model", name); err != nil {
		return nil, fmt.Errorf("versions: %w", err)
	}
	nums, err := s.versionNums(name)
	if err == nil && len(nums) == 0 {
		err = fmt.Errorf("model %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("versions %s: %w", name, err)
	}
	vs := make([]Version, 0, len(nums))
	for _, n := range nums {
		v, err := s.get(name, "v"+strconv.Itoa(n))
		if err != nil {
			return nil, fmt.Errorf("versions %s: %w", name, err)
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// Get returns one version with its load reports.
func (s *Local) Get(ctx context.Context, name, version string) (Version, error) {
	v, err := s.checkedGet(name, version)
	if err != nil {
		return Version{}, fmt.Errorf("get %s %s: %w", name, version, err)
	}
	return v, nil
}

// Aliases maps each of the model's aliases to its version.
func (s *Local) Aliases(ctx context.Context, name string) (map[string]string, error) {
	moves, err := s.history(name)
	if err != nil {
		return nil, fmt.Errorf("aliases %s: %w", name, err)
	}
	return aliases(moves), nil
}

// Resolve returns the version an alias points at.
func (s *Local) Resolve(ctx context.Context, name, alias string) (Version, error) {
	v, err := s.resolve(name, alias)
	if err != nil {
		return Version{}, fmt.Errorf("resolve %s %s: %w", name, alias, err)
	}
	return v, nil
}

func (s *Local) resolve(name, alias string) (Version, error) {
	if err := checkName("alias", alias); err != nil {
		return Version{}, err
	}
	moves, err := s.history(name)
	if err != nil {
		return Version{}, err
	}
	version, ok := aliases(moves)[alias]
	if !ok {
		return Version{}, fmt.Errorf("alias %s: %w", alias, ErrNotFound)
	}
	return s.get(name, version)
}

// SetAlias points alias at version. Setting an alias to the version it
// already points at is a no-op: nothing is verified or recorded, and the
// move that last set it is returned.
func (s *Local) SetAlias(ctx context.Context, name, alias, version, who, why string) (Move, error) {
	m, err := s.setAlias(ctx, name, alias, version, KindSet, who, why)
	if err != nil {
		return Move{}, fmt.Errorf("set alias %s %s=%s: %w", name, alias, version, err)
	}
	return m, nil
}

// Promote makes version the champion; it is SetAlias(Champion) recorded as
// kind "promote", and likewise a no-op if version is already champion.
func (s *Local) Promote(ctx context.Context, name, version, who, why string) (Move, error) {
	m, err := s.setAlias(ctx, name, Champion, version, KindPromote, who, why)
	if err != nil {
		return Move{}, fmt.Errorf("promote %s %s: %w", name, version, err)
	}
	return m, nil
}

func (s *Local) setAlias(ctx context.Context, name, alias, version, kind, who, why string) (Move, error) {
	if err := checkName("alias", alias); err != nil {
		return Move{}, err
	}
	v, err := s.checkedGet(name, version)
	if err != nil {
		return Move{}, err
	}
	return s.withHistory(ctx, name, func(moves []Move, end int64) (Move, error) {
		from := aliases(moves)[alias]
		if from == version {
			return lastMove(moves, alias), nil
		}
		return s.record(name, end, v, Move{Alias: alias, From: from, To: version, Kind: kind, Who: who, Why: why})
	})
}

// RemoveAlias deletes an alias; removing one that is not set is ErrNotFound.
func (s *Local) RemoveAlias(ctx context.Context, name, alias, who, why string) (Move, error) {
	m, err := s.removeAlias(ctx, name, alias, who, why)
	if err != nil {
		return Move{}, fmt.Errorf("remove alias %s %s: %w", name, alias, err)
	}
	return m, nil
}

func (s *Local) removeAlias(ctx context.Context, name, alias, who, why string) (Move, error) {
	if err := checkName("alias", alias); err != nil {
		return Move{}, err
	}
	if err := s.requireModel(name); err != nil {
		return Move{}, err
	}
	return s.withHistory(ctx, name, func(moves []Move, end int64) (Move, error) {
		from, ok := aliases(moves)[alias]
		if !ok {
			return Move{}, fmt.Errorf("alias %s: %w", alias, ErrNotFound)
		}
		return s.record(name, end, Version{}, Move{Alias: alias, From: from, Kind: KindRemove, Who: who, Why: why})
	})
}

// Rollback moves the champion back to the version it had before the current
// one. Champion moves replay as a stack: "promote" and "set" push, "rollback"
// pops, and "remove" empties it (nothing serves, so there is nothing to roll
// back from). The target is the nearest entry below the top that differs
// from the current champion; with none it is ErrNoRollback.
func (s *Local) Rollback(ctx context.Context, name, who, why string) (Move, error) {
	m, err := s.rollback(ctx, name, who, why)
	if err != nil {
		return Move{}, fmt.Errorf("rollback %s: %w", name, err)
	}
	return m, nil
}

func (s *Local) rollback(ctx context.Context, name, who, why string) (Move, error) {
	if err := s.requireModel(name); err != nil {
		return Move{}, err
	}
	return s.withHistory(ctx, name, func(moves []Move, end int64) (Move, error) {
		cur := aliases(moves)[Champion]
		stack := championStack(moves)
		target := ""
		for i := len(stack) - 2; i >= 0 && target == ""; i-- {
			if stack[i] != cur {
				target = stack[i]
			}
		}
		if target == "" {
			return Move{}, ErrNoRollback
		}
		v, err := s.get(name, target)
		if err != nil {
			return Move{}, err
		}
		return s.record(name, end, v, Move{Alias: Champion, From: cur, To: target, Kind: KindRollback, Who: who, Why: why})
	})
}

// History returns every alias move of the model, oldest first.
func (s *Local) History(ctx context.Context, name string) ([]Move, error) {
	moves, err := s.history(name)
	if err != nil {
		return nil, fmt.Errorf("history %s: %w", name, err)
	}
	return moves, nil
}

// ReportLoad records what instance r.Instance saw loading a version,
// replacing its previous report for that version. A zero r.At is set to now.
func (s *Local) ReportLoad(ctx context.Context, name, version string, r LoadReport) error {
	if err := s.reportLoad(name, version, r); err != nil {
		return fmt.Errorf("report load %s %s: %w", name, version, err)
	}
	return nil
}

func (s *Local) reportLoad(name, version string, r LoadReport) error {
	if r.Instance == "" {
		return fmt.Errorf("instance %q: %w", r.Instance, ErrInvalid)
	}
	if _, err := s.checkedGet(name, version); err != nil {
		return err
	}
	if r.At.IsZero() {
		r.At = s.now().UTC()
	}
	dir := filepath.Join(s.modelDir(name), loadsDir, version)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// No lock: each instance owns its file and the rename replaces it whole.
	return writeAtomic(filepath.Join(dir, instanceFile(r.Instance)), r)
}

func (s *Local) modelDir(name string) string { return filepath.Join(s.root, name) }

// versionNums lists the model's committed versions' numbers, ascending; a
// missing model has none.
func (s *Local) versionNums(name string) ([]int, error) {
	entries, err := os.ReadDir(s.modelDir(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var nums []int
	for _, e := range entries {
		if n, ok := versionNum(e.Name()); ok && e.IsDir() {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	return nums, nil
}

// requireModel checks name and that the model has a version, so writes to an
// unknown model fail with ErrNotFound instead of creating its directory.
func (s *Local) requireModel(name string) error {
	if err := checkName("model", name); err != nil {
		return err
	}
	nums, err := s.versionNums(name)
	if err != nil {
		return err
	}
	if len(nums) == 0 {
		return fmt.Errorf("model %s: %w", name, ErrNotFound)
	}
	return nil
}

func (s *Local) checkedGet(name, version string) (Version, error) {
	if err := checkName("model", name); err != nil {
		return Version{}, err
	}
	if err := checkVersion(version); err != nil {
		return Version{}, err
	}
	return s.get(name, version)
}

// get reads a version's metadata and load reports; name and version must
// already be valid.
func (s *Local) get(name, version string) (Version, error) {
	dir := filepath.Join(s.modelDir(name), version)
	raw, err := os.ReadFile(filepath.Join(dir, versionFile))
	if errors.Is(err, fs.ErrNotExist) {
		if err := s.requireModel(name); err != nil {
			return Version{}, err
		}
		return Version{}, fmt.Errorf("version %s: %w", version, ErrNotFound)
	}
	if err != nil {
		return Version{}, err
	}
	var v Version
	if err := json.Unmarshal(raw, &v); err != nil {
		return Version{}, fmt.Errorf("version %s: %s: %w", version, versionFile, err)
	}
	v.Dir = dir
	v.Loads, err = s.loads(name, version)
	return v, err
}

// loads reads the latest report of each instance, sorted by instance. An
// unreadable report is skipped: it is diagnostics, and must not stop a
// version from being resolved and served.
func (s *Local) loads(name, version string) ([]LoadReport, error) {
	dir := filepath.Join(s.modelDir(name), loadsDir, version)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rs []LoadReport
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".json") {
			continue // temp files of writes in flight
		}
		var r LoadReport
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || json.Unmarshal(raw, &r) != nil {
			continue
		}
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b LoadReport) int { return strings.Compare(a.Instance, b.Instance) })
	return rs, nil
}

// history returns the model's moves, never nil for a known model.
func (s *Local) history(name string) ([]Move, error) {
	if err := s.requireModel(name); err != nil {
		return nil, err
	}
	moves, _, err := s.readHistory(name)
	if moves == nil && err == nil {
		moves = []Move{}
	}
	return moves, err
}

// readHistory parses history.jsonl. Each move is written with its newline in
// one write, so bytes after the last newline are a write torn by a crash (or
// one in flight): they are ignored, and end is where the complete lines stop.
func (s *Local) readHistory(name string) (moves []Move, end int64, err error) {
	path := filepath.Join(s.modelDir(name), historyFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	end = int64(bytes.LastIndexByte(raw, '\n') + 1)
	n := 0
	for line := range bytes.Lines(raw[:end]) {
		n++
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var m Move
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, 0, fmt.Errorf("%s line %d: %w", path, n, err)
		}
		moves = append(moves, m)
	}
	return moves, end, nil
}

// record verifies the version a move points at (none for a removal) and
// appends the move to the history; the caller holds the lock and read the
// history up to end.
func (s *Local) record(name string, end int64, to Version, m Move) (Move, error) {
	if to.Dir != "" && s.verify != nil {
		if err := s.verify(to.Dir); err != nil {
			return Move{}, fmt.Errorf("verify %s: %w: %w", to.Version, ErrInvalid, err)
		}
	}
	m.Model, m.At = name, s.now().UTC()
	line, err := json.Marshal(m)
	if err != nil {
		return Move{}, err
	}
	f, err := os.OpenFile(filepath.Join(s.modelDir(name), historyFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return Move{}, err
	}
	defer f.Close()
	// Drop a torn tail first, or the new line would be glued onto it.
	if err := f.Truncate(end); err != nil {
		return Move{}, err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return Move{}, err
	}
	if err := f.Sync(); err != nil {
		return Move{}, err
	}
	return m, f.Close()
}

// lock serialises the writers of one model: the channel among this
// process's goroutines, the flock on NAME/.lock against other processes.
// The model directory must exist.
func (s *Local) lock(ctx context.Context, name string) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	sem, ok := s.locks[name]
	if !ok {
		sem = make(chan struct{}, 1)
		s.locks[name] = sem
	}
	s.mu.Unlock()
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release, err := filelock.Lock(ctx, filepath.Join(s.modelDir(name), lockFile))
	if err != nil {
		<-sem
		return nil, err
	}
	return func() {
		release()
		<-sem
	}, nil
}

// aliases replays moves into alias -> version.
func aliases(moves []Move) map[string]string {
	a := map[string]string{}
	for _, m := range moves {
		if m.To == "" {
			delete(a, m.Alias)
		} else {
			a[m.Alias] = m.To
		}
	}
	return a
}

// lastMove is the latest move of alias (the zero Move if none).
func lastMove(moves []Move, alias string) Move {
	for i := len(moves) - 1; i >= 0; i-- {
		if moves[i].Alias == alias {
			return moves[i]
		}
	}
	return Move{}
}

// championStack replays champion moves as a stack whose top is the current
// champion (see Rollback).
func championStack(moves []Move) []string {
	var stack []string
	for _, m := range moves {
		if m.Alias != Champion {
			continue
		}
		switch m.Kind {
		case KindSet, KindPromote:
			stack = append(stack, m.To)
		case KindRollback:
			// Pop down to the target: the old top and any entries equal to
			// it that Rollback skipped.
			for len(stack) > 0 && stack[len(stack)-1] != m.To {
				stack = stack[:len(stack)-1]
			}
			if len(stack) == 0 {
				stack = append(stack, m.To)
			}
		case KindRemove:
			stack = nil
		}
	}
	return stack
}

// contentFiles returns the manifest's file names, sorted, refusing any that
// is not a plain file name (a hostile manifest must not write outside the
// version directory) or that would clash with what the registry writes.
func contentFiles(files map[string]string) ([]string, error) {
	names := slices.Sorted(maps.Keys(files))
	for _, f := range names {
		if f != filepath.Base(f) || strings.HasPrefix(f, ".") || f == bundle.ManifestFile || f == versionFile {
			return nil, fmt.Errorf("bundle file %q: %w", f, ErrInvalid)
		}
	}
	return names, nil
}

// contentHash is sha256 over the sorted "<file>  <sha256>\n" lines of the
// manifest's checksums: it covers the model content but not model.json, so it
// does not change when the registry relabels the copy.
func contentHash(files map[string]string) string {
	h := sha256.New()
	for _, f := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(h, "%s  %s\n", f, files[f])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// instanceFile maps an instance name to a safe file name. A name that needed
// changing gets a hash of the original, so two instances cannot collide.
func instanceFile(instance string) string {
	safe := []byte(instance)
	for i, c := range safe {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' && i > 0
		if !ok {
			safe[i] = '_'
		}
	}
	if string(safe) != instance || len(safe) > 100 {
		sum := sha256.Sum256([]byte(instance))
		safe = fmt.Appendf(safe[:min(len(safe), 100)], "-%x", sum[:6])
	}
	return string(safe) + ".json"
}

// cleanTemp removes temp dirs left by crashed Registers. The caller holds the
// lock, so none is in use; failures only leave litter that listings ignore.
func cleanTemp(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// copyChecked copies src to dst, fsyncs it, and checks the copy has the
// manifest's checksum (bundle.Load checks only the files it needs, and src
// may change after it was loaded).
func copyChecked(src, dst, want string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), in); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("%w: %s checksum mismatch (bundle changed or corrupt)", ErrInvalid, src)
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

// writeJSON writes v, indented, to a new file and fsyncs it.
func writeJSON(path string, v any) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	return writeTo(f, v)
}

// writeAtomic replaces path with v as JSON: readers see the old file or the
// new one, never a partial write.
func writeAtomic(path string, v any) error {
	f, err := os.CreateTemp(filepath.Dir(path), tmpPrefix)
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := writeTo(f, v); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	return filelock.SyncDir(filepath.Dir(path))
}

// writeTo writes v as indented JSON to f, fsyncs and closes it.
func writeTo(f *os.File, v any) error {
	defer f.Close()
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// withHistory runs fn with the model's lock held and its history read: the
// read-modify-append of every alias move, serialised across processes.
func (s *Local) withHistory(ctx context.Context, name string, fn func(moves []Move, end int64) (Move, error)) (Move, error) {
	unlock, err := s.lock(ctx, name)
	if err != nil {
		return Move{}, err
	}
	defer unlock()
	moves, end, err := s.readHistory(name)
	if err != nil {
		return Move{}, err
	}
	return fn(moves, end)
}
