package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func openTestStore(t *testing.T) *Store {
	t.Helper()
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { clock = clock.Add(time.Second); return clock }
	return s
}

func rowsOf(pairs ...string) Rows {
	var out Rows
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, Row{ID: fmt.Sprintf("base:%d", i/2), Text: pairs[i], Label: pairs[i+1], Origin: OriginBase})
	}
	return out
}

func mustWrite(t *testing.T, s *Store, rows Rows) Manifest {
	t.Helper()
	m, err := s.Write("support", rows, Source{Base: &BaseSource{Path: "train.csv", SHA256: "abc"}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSnapshotStoreContentAddressed(t *testing.T) {
	s := openTestStore(t)
	rows := rowsOf("my card, \"late\"\nagain", "card_arrival", "refund", "refund")
	src := Source{Base: &BaseSource{Path: "train.csv", SHA256: "abc"},
		Feedback: &FeedbackOffsets{Topic: "triage.feedback", Offsets: map[int32]int64{0: 3, 1: 0}}}
	m, err := s.Write("support", rows, src)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(s.Root(), "support", m.ID)
	data, err := os.ReadFile(filepath.Join(dir, rowsFile))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if sha := hex.EncodeToString(sum[:]); m.SHA256 != sha || m.ID != sha[:16] {
		t.Errorf("manifest id %s sha256 %s; rows.csv hashes to %s", m.ID, m.SHA256, sha)
	}
	if !strings.HasPrefix(string(data), "id,text,label,origin\n") {
		t.Errorf("rows.csv starts %q", data[:min(len(data), 40)])
	}
	if m.Rows != 2 || m.LabelCounts["refund"] != 1 || m.OriginCounts[OriginBase] != 2 || m.Parent != "" ||
		m.Feedback.Offsets[0] != 3 || m.Base.SHA256 != "abc" {
		t.Errorf("manifest %+v", m)
	}
	got, err := s.Get("support", m.ID[:5]) // a unique prefix
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Rows, rows) || got.Manifest.ID != m.ID || got.Manifest.Feedback.Offsets[0] != 3 {
		t.Errorf("Get = %+v, rows %v", got.Manifest, got.Rows)
	}
	// The same content again is the same snapshot, untouched: same time, no
	// second folder, no leftover temp folder.
	again, err := s.Write("support", slices.Clone(rows), Source{})
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != m.ID || !again.CreatedAt.Equal(m.CreatedAt) || again.Base == nil {
		t.Errorf("rewrite returned %+v, want the first snapshot %+v", again, m)
	}
	entries, _ := os.ReadDir(filepath.Join(s.Root(), "support"))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{".lock", m.ID, latestFile}; !slices.Equal(names, want) {
		t.Errorf("model folder holds %v, want %v", names, want)
	}
	if fi, err := os.Stat(filepath.Join(dir, rowsFile)); err != nil || fi.Mode().Perm()&0o222 != 0 {
		t.Errorf("rows.csv should be read-only: %v %v", fi.Mode(), err)
	}
}

func TestSnapshotStoreParentChainAndLatest(t *testing.T) {
	s := openTestStore(t)
	if _, err := s.Latest("support"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Latest of an empty store: %v", err)
	}
	a := mustWrite(t, s, rowsOf("one", "x"))
	b := mustWrite(t, s, rowsOf("one", "x", "two", "y"))
	c := mustWrite(t, s, rowsOf("one", "z", "two", "y"))
	if a.Parent != "" || b.Parent != a.ID || c.Parent != b.ID {
		t.Errorf("parents: a=%q b=%q (want %s) c=%q (want %s)", a.Parent, b.Parent, a.ID, c.Parent, b.ID)
	}
	aDir := filepath.Join(s.Root(), "support", a.ID)
	before, _ := os.ReadFile(filepath.Join(aDir, manifestFile))
	// Back to a's content: a itself, unchanged, and the model's latest again.
	a2 := mustWrite(t, s, rowsOf("one", "x"))
	after, _ := os.ReadFile(filepath.Join(aDir, manifestFile))
	if a2.ID != a.ID || a2.Parent != "" || string(before) != string(after) {
		t.Errorf("rewrite of a: %+v; manifest changed: %v", a2, string(before) != string(after))
	}
	if l, err := s.Latest("support"); err != nil || l.Manifest.ID != a.ID {
		t.Errorf("Latest = %v, %v; want %s", l.Manifest.ID, err, a.ID)
	}
	d := mustWrite(t, s, rowsOf("three", "x"))
	if d.Parent != a.ID {
		t.Errorf("d.Parent = %s, want %s", d.Parent, a.ID)
	}
	ms, err := s.List("support")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	if want := []string{a.ID, b.ID, c.ID, d.ID}; !slices.Equal(ids, want) {
		t.Errorf("List = %v, want %v (oldest first)", ids, want)
	}
	if ms, err := s.List("reviews"); err != nil || len(ms) != 0 {
		t.Errorf("List of a model without snapshots: %v, %v", ms, err)
	}
}

func TestSnapshotStoreDetectsTampering(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, dir string)
	}{
		{"rows edited", func(t *testing.T, dir string) {
			rewrite(t, filepath.Join(dir, rowsFile), func(b string) string { return strings.Replace(b, "late", "lost", 1) })
		}},
		{"rows and manifest sha256 edited together", func(t *testing.T, dir string) {
			var sha string
			rewrite(t, filepath.Join(dir, rowsFile), func(b string) string {
				b = strings.Replace(b, "late", "lost", 1)
				sum := sha256.Sum256([]byte(b))
				sha = hex.EncodeToString(sum[:])
				return b
			})
			rewrite(t, filepath.Join(dir, manifestFile), func(b string) string {
				return replaceSHA(b, sha)
			})
		}},
		{"manifest counts edited", func(t *testing.T, dir string) {
			rewrite(t, filepath.Join(dir, manifestFile), func(b string) string { return strings.Replace(b, `"rows": 2`, `"rows": 3`, 1) })
		}},
		{"rows removed", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, rowsFile)); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t)
			rows := rowsOf("my card is late", "card_arrival", "refund me", "refund")
			m := mustWrite(t, s, rows)
			if _, err := s.Get("support", m.ID); err != nil {
				t.Fatalf("untouched snapshot: %v", err)
			}
			tc.tamper(t, filepath.Join(s.Root(), "support", m.ID))
			if _, err := s.Get("support", m.ID); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Get after tampering: %v, want ErrCorrupt", err)
			}
			if _, err := s.Latest("support"); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Latest after tampering: %v, want ErrCorrupt", err)
			}
			// Writing the same content must not pass the damaged copy off
			// as the snapshot.
			if _, err := s.Write("support", rows, Source{}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Write over a damaged snapshot: %v, want ErrCorrupt", err)
			}
		})
	}
}

func rewrite(t *testing.T, path string, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	nb := edit(string(b))
	if nb == string(b) {
		t.Fatalf("%s: edit changed nothing", path)
	}
	if err := os.WriteFile(path, []byte(nb), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceSHA replaces the manifest's "sha256" of the rows (the first one
// in the file: base's comes after) with sha.
func replaceSHA(manifest, sha string) string {
	const key = `"sha256": "`
	i := strings.Index(manifest, key)
	if i < 0 {
		return manifest
	}
	j := i + len(key)
	k := strings.IndexByte(manifest[j:], '"')
	return manifest[:j] + sha + manifest[j+k:]
}

func TestSnapshotStoreIDsAndNames(t *testing.T) {
	s := openTestStore(t)
	var ms []Manifest
	// 17 snapshots: two share a first hex digit, so a 1-digit prefix is
	// ambiguous for at least one of them.
	for i := range 17 {
		ms = append(ms, mustWrite(t, s, rowsOf(fmt.Sprintf("text %d", i), "x")))
	}
	ambiguous := 0
	for _, m := range ms {
		_, err := s.Get("support", m.ID[:1])
		if errors.Is(err, ErrAmbiguous) {
			ambiguous++
		} else if err != nil {
			t.Errorf("Get(%s): %v", m.ID[:1], err)
		}
		if got, err := s.Get("support", m.ID); err != nil || got.Manifest.ID != m.ID {
			t.Errorf("Get(%s) = %v, %v", m.ID, got.Manifest.ID, err)
		}
	}
	if ambiguous == 0 {
		t.Error("no 1-digit prefix was ambiguous among 17 snapshots")
	}
	for _, id := range []string{"", "../x", "ABCDEF", "0123456789abcdef0"} {
		if _, err := s.Get("support", id); !errors.Is(err, ErrInvalid) {
			t.Errorf("Get(%q): %v, want ErrInvalid", id, err)
		}
	}
	if _, err := s.Get("support", "ffffffffffffffff"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a missing id: %v, want ErrNotFound", err)
	}
	for _, name := range []string{"", "Support", "../up", "a/b", strings.Repeat("a", 65)} {
		if _, err := s.Write(name, rowsOf("t", "l"), Source{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Write(model %q): %v, want ErrInvalid", name, err)
		}
	}
	if _, err := s.Write("support", nil, Source{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Write of no rows: %v, want ErrInvalid", err)
	}
}

func TestSnapshotStoreDiff(t *testing.T) {
	s := openTestStore(t)
	a := mustWrite(t, s, Rows{
		{ID: "base:0", Text: "my card is late", Label: "card_arrival", Origin: OriginBase},
		{ID: "base:1", Text: "refund me", Label: "refund", Origin: OriginBase},
		{ID: "base:2", Text: "hello there", Label: "greet", Origin: OriginBase},
		{ID: "feedback:t-9", Text: "cancel my acount", Label: "misc", Origin: OriginFeedback},
	})
	b := mustWrite(t, s, Rows{
		// base:0 removed, so the other base rows moved up a position.
		{ID: "base:0", Text: "REFUND me", Label: "refund", Origin: OriginBase},                        // same text: unchanged
		{ID: "base:1", Text: "hello there", Label: "greet", Origin: OriginBase},                       // unchanged, though its id moved
		{ID: "feedback:t-1", Text: "my card is late", Label: "card_delivery", Origin: OriginFeedback}, // overrides base:0
		{ID: "feedback:t-2", Text: "brand new", Label: "new_class", Origin: OriginFeedback},
		{ID: "feedback:t-9", Text: "cancel my account", Label: "cancel", Origin: OriginFeedback}, // text fixed and relabelled
	})
	d, err := s.Diff("support", a.ID, b.ID[:8])
	if err != nil {
		t.Fatal(err)
	}
	if d.From != a.ID || d.To != b.ID || d.Unchanged != 2 {
		t.Errorf("diff %s", d)
	}
	if len(d.Added) != 1 || d.Added[0].ID != "feedback:t-2" || len(d.Removed) != 0 {
		t.Errorf("added %v removed %v", d.Added, d.Removed)
	}
	var rel []string
	for _, r := range d.Relabelled {
		rel = append(rel, r.Before.ID+">"+r.After.ID+":"+r.Before.Label+">"+r.After.Label)
	}
	if want := []string{"base:0>feedback:t-1:card_arrival>card_delivery", "feedback:t-9>feedback:t-9:misc>cancel"}; !slices.Equal(rel, want) {
		t.Errorf("relabelled %v, want %v", rel, want)
	}
	want := []LabelChange{{"cancel", 0, 1, 1}, {"card_arrival", 1, 0, -1}, {"card_delivery", 0, 1, 1}, {"misc", 1, 0, -1}, {"new_class", 0, 1, 1}}
	if !slices.Equal(d.Labels, want) {
		t.Errorf("label changes %v, want %v", d.Labels, want)
	}
	// Backwards: the new row is removed, the relabels reverse.
	back, err := s.Diff("support", b.ID, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Removed) != 1 || len(back.Added) != 0 || len(back.Relabelled) != 2 || back.Relabelled[0].After.Label != "card_arrival" {
		t.Errorf("reverse diff %s: %+v", back, back.Relabelled)
	}
	// A same-id row whose text changed but label did not is a different
	// example: removed and added.
	c := mustWrite(t, s, Rows{{ID: "base:0", Text: "something else", Label: "refund", Origin: OriginBase}})
	e := mustWrite(t, s, Rows{{ID: "base:0", Text: "other text", Label: "refund", Origin: OriginBase}})
	if d, err := s.Diff("support", c.ID, e.ID); err != nil || len(d.Added) != 1 || len(d.Removed) != 1 || len(d.Relabelled) != 0 || len(d.Labels) != 0 {
		t.Errorf("text change: %v %+v", err, d)
	}
	if _, err := s.Diff("support", a.ID, "0000000000000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Diff with a missing snapshot: %v", err)
	}
}
