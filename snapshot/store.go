package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
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
	"strings"
	"time"

	"github.com/triage-ml/triage/internal/filelock"
)

// Files inside ROOT/MODEL.
const (
	rowsFile     = "rows.csv"
	manifestFile = "manifest.json"
	latestFile   = "latest" // the id the last Write returned; not hex, so never an id
	lockFile     = ".lock"
	tmpPrefix    = ".tmp-"
	idLen        = 16 // hex digits of the rows' SHA-256: 64 bits, ample per model
)

var rowsHeader = []string{"id", "text", "label", "origin"}

// Error classes (test with errors.Is).
var (
	ErrNotFound  = errors.New("not found")
	ErrAmbiguous = errors.New("ambiguous snapshot id prefix")
	ErrCorrupt   = errors.New("corrupt snapshot")
	ErrInvalid   = errors.New("invalid")
)

// BaseSource is the base training file a snapshot was built from.
type BaseSource struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// FeedbackOffsets is how far the feedback topic was read: per partition,
// the end offset (exclusive).
type FeedbackOffsets struct {
	Topic   string          `json:"topic"`
	Offsets map[int32]int64 `json:"offsets"`
}

// Source names what a snapshot was built from; either part may be nil.
type Source struct {
	Base     *BaseSource
	Feedback *FeedbackOffsets
}

// Manifest describes one snapshot (ROOT/MODEL/ID/manifest.json).
type Manifest struct {
	ID           string           `json:"id"` // first 16 hex digits of SHA256
	Model        string           `json:"model"`
	CreatedAt    time.Time        `json:"created_at"`
	Rows         int              `json:"rows"`
	LabelCounts  map[string]int   `json:"label_counts"`
	OriginCounts map[string]int   `json:"origin_counts"`
	SHA256       string           `json:"sha256"` // of rows.csv
	Base         *BaseSource      `json:"base,omitempty"`
	Feedback     *FeedbackOffsets `json:"feedback,omitempty"`
	// Parent is the model's latest snapshot when this one was written.
	Parent string `json:"parent,omitempty"`
}

// Snapshot is a verified snapshot: its manifest, folder and rows.
type Snapshot struct {
	Manifest Manifest
	Dir      string
	Rows     Rows
}

// Store keeps snapshots in a local folder:
//
//	ROOT/MODEL/ID/rows.csv       id,text,label,origin; ID = its SHA-256, cut to 16 hex digits
//	ROOT/MODEL/ID/manifest.json  Manifest
//	ROOT/MODEL/latest            the ID the last Write returned
//	ROOT/MODEL/.lock             flock that serialises writers
//
// A snapshot folder is renamed into place complete and never changed, so
// reads take no lock; a Store is safe for concurrent use by goroutines and
// processes sharing ROOT.
type Store struct {
	root string
	now  func() time.Time
}

// OpenStore opens the store at root, creating the folder if missing.
func OpenStore(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open snapshot store %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("open snapshot store %s: %w", root, err)
	}
	return &Store{root: abs, now: time.Now}, nil
}

// Root is the store's absolute folder.
func (s *Store) Root() string { return s.root }

// Write stores rows as a snapshot of model and returns its manifest. The
// id is the content's hash: when a snapshot with the same rows exists it is
// returned unchanged (with its own sources, time and parent) and becomes
// the model's Latest again. Otherwise the new snapshot's parent is the
// model's Latest.
func (s *Store) Write(model string, rows Rows, src Source) (Manifest, error) {
	m, err := s.write(model, rows, src)
	if err != nil {
		return Manifest{}, fmt.Errorf("snapshot %s: %w", model, err)
	}
	return m, nil
}

func (s *Store) write(model string, rows Rows, src Source) (Manifest, error) {
	if err := checkName(model); err != nil {
		return Manifest{}, err
	}
	if len(rows) == 0 {
		return Manifest{}, fmt.Errorf("%w: no rows", ErrInvalid)
	}
	data, err := encodeRows(rows)
	if err != nil {
		return Manifest{}, err
	}
	sum := sha256.Sum256(data)
	sha := hex.EncodeToString(sum[:])
	id := sha[:idLen]
	dir := filepath.Join(s.root, model)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Manifest{}, err
	}
	unlock, err := filelock.Lock(context.Background(), filepath.Join(dir, lockFile))
	if err != nil {
		return Manifest{}, err
	}
	defer unlock()

	switch old, err := s.get(model, id); {
	case err == nil && old.Manifest.SHA256 != sha:
		return Manifest{}, fmt.Errorf("%w: id %s is taken by other content (sha256 %s, want %s)", ErrCorrupt, id, old.Manifest.SHA256, sha)
	case err == nil:
		return old.Manifest, s.setLatest(model, id)
	case !errors.Is(err, ErrNotFound):
		return Manifest{}, fmt.Errorf("the same content exists but does not verify (remove %s to write it again): %w",
			filepath.Join(dir, id), err)
	}
	parent, err := s.latestID(model)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Manifest{}, err
	}
	origins := map[string]int{}
	for _, r := range rows {
		origins[r.Origin]++
	}
	m := Manifest{ID: id, Model: model, CreatedAt: s.now().UTC(), Rows: len(rows), LabelCounts: rows.LabelCounts(),
		OriginCounts: origins, SHA256: sha, Base: src.Base, Feedback: src.Feedback, Parent: parent}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, err
	}
	tmp, err := os.MkdirTemp(dir, tmpPrefix)
	if err != nil {
		return Manifest{}, err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	// Read-only files say "immutable" to anyone browsing the store.
	if err := writeFile(filepath.Join(tmp, rowsFile), data, 0o444); err != nil {
		return Manifest{}, err
	}
	if err := writeFile(filepath.Join(tmp, manifestFile), append(mj, '\n'), 0o444); err != nil {
		return Manifest{}, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes it 0700
		return Manifest{}, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, id)); err != nil {
		return Manifest{}, err
	}
	if err := filelock.SyncDir(dir); err != nil {
		return Manifest{}, err
	}
	return m, s.setLatest(model, id)
}

// List returns the model's snapshots, oldest first (none when the model
// has none). Only manifests are read; Get verifies the rows.
func (s *Store) List(model string) ([]Manifest, error) {
	ms, err := s.list(model)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", model, err)
	}
	return ms, nil
}

func (s *Store) list(model string) ([]Manifest, error) {
	if err := checkName(model); err != nil {
		return nil, err
	}
	ids, err := s.ids(model)
	if err != nil {
		return nil, err
	}
	out := make([]Manifest, 0, len(ids))
	for _, id := range ids {
		m, err := s.readManifest(model, id)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortStableFunc(out, func(a, b Manifest) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Get returns the snapshot id (or the one snapshot whose id starts with
// it), verified: rows.csv must hash to the manifest's sha256 and id, and
// agree with its row and label counts; a mismatch is ErrCorrupt.
func (s *Store) Get(model, id string) (Snapshot, error) {
	snap, err := s.resolve(model, id)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", model, err)
	}
	return snap, nil
}

func (s *Store) resolve(model, prefix string) (Snapshot, error) {
	if err := checkName(model); err != nil {
		return Snapshot{}, err
	}
	if prefix == "" || len(prefix) > idLen || !isHex(prefix) {
		return Snapshot{}, fmt.Errorf("%w: snapshot id %q (want up to %d lower-case hex digits)", ErrInvalid, prefix, idLen)
	}
	if len(prefix) == idLen {
		return s.get(model, prefix)
	}
	ids, err := s.ids(model)
	if err != nil {
		return Snapshot{}, err
	}
	var match []string
	for _, id := range ids {
		if strings.HasPrefix(id, prefix) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", prefix, ErrNotFound)
	case 1:
		return s.get(model, match[0])
	}
	return Snapshot{}, fmt.Errorf("%w: %s matches %s", ErrAmbiguous, prefix, strings.Join(match, ", "))
}

// Latest is the snapshot the model's last Write returned.
func (s *Store) Latest(model string) (Snapshot, error) {
	id, err := s.latestID(model)
	if err == nil {
		var snap Snapshot
		if snap, err = s.get(model, id); err == nil {
			return snap, nil
		}
	}
	return Snapshot{}, fmt.Errorf("snapshot %s: latest: %w", model, err)
}

// latestID reads ROOT/MODEL/latest; without it (a store copied without
// it), the newest snapshot by creation time.
func (s *Store) latestID(model string) (string, error) {
	if err := checkName(model); err != nil {
		return "", err
	}
	path := filepath.Join(s.root, model, latestFile)
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if !isID(id) {
			return "", fmt.Errorf("%w: %s holds %q, not a snapshot id", ErrCorrupt, path, id)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	ms, err := s.list(model)
	if err != nil {
		return "", err
	}
	if len(ms) == 0 {
		return "", fmt.Errorf("model %q has no snapshots: %w", model, ErrNotFound)
	}
	return ms[len(ms)-1].ID, nil
}

func (s *Store) setLatest(model, id string) error {
	path := filepath.Join(s.root, model, latestFile)
	tmp := path + ".tmp"
	if err := writeFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// ids lists the snapshot folders of model.
func (s *Store) ids(model string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(s.root, model))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && isID(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (s *Store) readManifest(model, id string) (Manifest, error) {
	dir := filepath.Join(s.root, model, id)
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); errors.Is(serr, fs.ErrNotExist) {
			return Manifest{}, fmt.Errorf("snapshot %s: %w", id, ErrNotFound)
		}
		return Manifest{}, fmt.Errorf("%w: %s has no %s", ErrCorrupt, dir, manifestFile)
	}
	if err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, filepath.Join(dir, manifestFile), err)
	}
	if m.ID != id || m.Model != model {
		return Manifest{}, fmt.Errorf("%w: %s names snapshot %s of %q", ErrCorrupt, filepath.Join(dir, manifestFile), m.ID, m.Model)
	}
	return m, nil
}

// get reads and verifies snapshot id of model.
func (s *Store) get(model, id string) (Snapshot, error) {
	m, err := s.readManifest(model, id)
	if err != nil {
		return Snapshot{}, err
	}
	dir := filepath.Join(s.root, model, id)
	path := filepath.Join(dir, rowsFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return Snapshot{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	sum := sha256.Sum256(data)
	if sha := hex.EncodeToString(sum[:]); sha != m.SHA256 || sha[:idLen] != id {
		return Snapshot{}, fmt.Errorf("%w: %s has sha256 %s; the manifest says %s", ErrCorrupt, path, sha, m.SHA256)
	}
	rows, err := decodeRows(data)
	if err != nil {
		return Snapshot{}, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
	if len(rows) != m.Rows || !maps.Equal(rows.LabelCounts(), m.LabelCounts) {
		return Snapshot{}, fmt.Errorf("%w: %s: %d rows do not match the manifest's counts (%d rows)", ErrCorrupt, path, len(rows), m.Rows)
	}
	return Snapshot{Manifest: m, Dir: dir, Rows: rows}, nil
}

func encodeRows(rows Rows) ([]byte, error) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	if err := w.Write(rowsHeader); err != nil {
		return nil, err
	}
	for _, r := range rows {
		if err := w.Write([]string{r.ID, r.Text, r.Label, r.Origin}); err != nil {
			return nil, err
		}
	}
	w.Flush()
	return buf.Bytes(), w.Error()
}

func decodeRows(data []byte) (Rows, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = len(rowsHeader)
	header, err := r.Read()
	if err != nil {
		return nil, err
	}
	if !slices.Equal(header, rowsHeader) {
		return nil, fmt.Errorf("header %v, want %v", header, rowsHeader)
	}
	var out Rows
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, Row{ID: rec[0], Text: rec[1], Label: rec[2], Origin: rec[3]})
	}
}

func isID(s string) bool { return len(s) == idLen && isHex(s) }

func isHex(s string) bool { return strings.Trim(s, "0123456789abcdef") == "" }

// checkName is the registry's rule for model names (they become folder
// names): ^[a-z0-9][a-z0-9_-]{0,63}$.
func checkName(s string) error {
	ok := len(s) >= 1 && len(s) <= 64
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '_' || c == '-')
	}
	if !ok {
		return fmt.Errorf("%w: model name %q (want 1-64 of a-z 0-9 _ -, starting with a letter or digit)", ErrInvalid, s)
	}
	return nil
}

func writeFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
