// Package snapshot is Triage's labelled data store: it reads human labels
// from the feedback topic, merges them with a model's base training data,
// and keeps the result as immutable, content-addressed snapshots per model
// (ROOT/MODEL/<id>/rows.csv + manifest.json), each naming its sources — the
// base file and its SHA-256, the feedback offsets it was read up to — and
// the model's previous snapshot, so a retrained model can say exactly what
// it learnt from and what changed since.
package snapshot

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/triage-ml/triage/featurizer"
	"github.com/triage-ml/triage/internal/dataset"
)

// Row origins.
const (
	OriginBase     = "base"     // a row of the base training file
	OriginFeedback = "feedback" // a human label from the feedback topic
	// OriginEval is a human label marked for evaluation: retraining never
	// trains on it and adds it to the model's fixed evaluation set.
	OriginEval = "eval"
)

// Row is one labelled text of a snapshot. ID is "base:N" for the base
// file's N-th example (0-based) and "feedback:ID" for a feedback record.
type Row struct {
	ID     string `json:"id"`
	Text   string `json:"text"`
	Label  string `json:"label"`
	Origin string `json:"origin"`
}

// Rows is a snapshot's content, in file order.
type Rows []Row

// LabelCounts is the number of rows per label.
func (rs Rows) LabelCounts() map[string]int {
	out := map[string]int{}
	for _, r := range rs {
		out[r.Label]++
	}
	return out
}

// Build merges the base examples with feedback labels into the rows of a
// snapshot. Duplicates go in two steps:
//   - by id: of several labels with one id, the latest wins;
//   - by normalised text (TextKey): a feedback label overrides a base row,
//     the latest feedback label overrides older ones, and a later base row
//     overrides an earlier one.
//
// "Latest" is compareLabels' order. Labels the model does not know yet are
// kept: retraining on the snapshot adds the class. The result is base rows
// in file order, then feedback rows oldest first, so the same inputs give
// the same bytes, and the same snapshot id.
func Build(base []dataset.Example, labels []Label) Rows {
	byID := map[string]Label{}
	for _, l := range labels {
		if cur, ok := byID[l.ID]; !ok || compareLabels(cur, l) < 0 {
			byID[l.ID] = l
		}
	}
	fb := slices.SortedFunc(maps.Values(byID), compareLabels)
	cands := make(Rows, 0, len(base)+len(fb))
	for i, ex := range base {
		cands = append(cands, Row{ID: "base:" + strconv.Itoa(i), Text: ex.Text, Label: ex.Label, Origin: OriginBase})
	}
	for _, l := range fb {
		origin := OriginFeedback
		if l.Eval {
			origin = OriginEval
		}
		cands = append(cands, Row{ID: "feedback:" + l.ID, Text: l.Text, Label: l.Label, Origin: origin})
	}
	// Candidates are in precedence order, so the last one per text wins.
	keys := make([]string, len(cands))
	winner := make(map[string]int, len(cands))
	for i, r := range cands {
		keys[i] = TextKey(r.Text)
		winner[keys[i]] = i
	}
	out := make(Rows, 0, len(winner))
	for i, r := range cands {
		if winner[keys[i]] == i {
			out = append(out, r)
		}
	}
	return out
}

// TextKey is the text as the model sees it: featurizer.Normalize (NFKC,
// case folding), with runs of white space made one space, since the
// featuriser splits words on white space anyway.
func TextKey(text string) string {
	n, _ := featurizer.Normalize(text, 0)
	return strings.Join(strings.Fields(n), " ")
}
