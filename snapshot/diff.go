package snapshot

import (
	"fmt"
	"maps"
	"slices"
)

// Diff is what changed from one snapshot of a model to another.
type Diff struct {
	Model      string        `json:"model"`
	From       string        `json:"from"`
	To         string        `json:"to"`
	Added      Rows          `json:"added"`
	Removed    Rows          `json:"removed"`
	Relabelled []Relabel     `json:"relabelled"`
	Unchanged  int           `json:"unchanged"`
	Labels     []LabelChange `json:"labels"` // labels whose count changed, by name
}

// Relabel is one row whose label changed.
type Relabel struct {
	Before Row `json:"before"`
	After  Row `json:"after"`
}

// LabelChange is one label's row count in both snapshots.
type LabelChange struct {
	Label  string `json:"label"`
	Before int    `json:"before"`
	After  int    `json:"after"`
	Delta  int    `json:"delta"`
}

// Diff compares snapshots a and b (ids or unique prefixes) of model; see
// diffRows for how rows are matched.
func (s *Store) Diff(model, a, b string) (Diff, error) {
	sa, err := s.Get(model, a)
	if err != nil {
		return Diff{}, err
	}
	sb, err := s.Get(model, b)
	if err != nil {
		return Diff{}, err
	}
	d := diffRows(sa.Rows, sb.Rows)
	d.Model, d.From, d.To = model, sa.Manifest.ID, sb.Manifest.ID
	ca, cb := sa.Manifest.LabelCounts, sb.Manifest.LabelCounts
	for _, l := range slices.Sorted(maps.Keys(merge(ca, cb))) {
		if ca[l] != cb[l] {
			d.Labels = append(d.Labels, LabelChange{Label: l, Before: ca[l], After: cb[l], Delta: cb[l] - ca[l]})
		}
	}
	if d.Labels == nil {
		d.Labels = []LabelChange{}
	}
	return d, nil
}

func merge(a, b map[string]int) map[string]int {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// diffRows pairs the rows of a and b: first by normalised text (a row is
// the same example whatever its id: base ids are positions in the base
// file, which shift when it changes), then by id among the rest, where only
// a changed label makes a pair (a feedback item whose text was corrected
// and relabelled). A pair with different labels is relabelled; unpaired
// rows are removed (a) or added (b).
func diffRows(a, b Rows) Diff {
	d := Diff{Added: Rows{}, Removed: Rows{}, Relabelled: []Relabel{}}
	pairedA, pairedB := make([]bool, len(a)), make([]bool, len(b))
	pair := func(i, j int) {
		pairedA[i], pairedB[j] = true, true
		if a[i].Label != b[j].Label {
			d.Relabelled = append(d.Relabelled, Relabel{Before: a[i], After: b[j]})
		} else {
			d.Unchanged++
		}
	}
	byText := map[string]int{}
	for j, r := range b {
		if _, dup := byText[TextKey(r.Text)]; !dup {
			byText[TextKey(r.Text)] = j
		}
	}
	for i, r := range a {
		if j, ok := byText[TextKey(r.Text)]; ok && !pairedB[j] {
			pair(i, j)
		}
	}
	byID := map[string]int{}
	for j, r := range b {
		if !pairedB[j] {
			byID[r.ID] = j
		}
	}
	for i, r := range a {
		if j, ok := byID[r.ID]; ok && !pairedA[i] && !pairedB[j] && r.Label != b[j].Label {
			pair(i, j)
		}
	}
	for i, r := range a {
		if !pairedA[i] {
			d.Removed = append(d.Removed, r)
		}
	}
	for j, r := range b {
		if !pairedB[j] {
			d.Added = append(d.Added, r)
		}
	}
	return d
}

// String summarises d in one line.
func (d Diff) String() string {
	return fmt.Sprintf("%s %s..%s: %d added, %d removed, %d relabelled, %d unchanged",
		d.Model, d.From, d.To, len(d.Added), len(d.Removed), len(d.Relabelled), d.Unchanged)
}
