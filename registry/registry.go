// Package registry is the model registry: per model name, immutable numbered
// versions of a bundle (see package bundle), aliases that point at versions
// (Champion is the one that serves), an append-only history of every alias
// move, lineage per version and what each serving instance saw loading it.
package registry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Champion is the alias serving code resolves.
const Champion = "champion"

// Move kinds.
const (
	KindSet      = "set"
	KindPromote  = "promote"
	KindRollback = "rollback"
	KindRemove   = "remove"
)

// Sentinel errors; every error returned wraps at most one of them together
// with which model, version or alias was involved.
var (
	ErrNotFound   = errors.New("not found")               // unknown model, version or alias
	ErrInvalid    = errors.New("invalid")                 // bad name/alias/version string, bundle or failed Verify
	ErrNoRollback = errors.New("nothing to roll back to") // champion history has no earlier version
	// ErrNotAnnounced marks an alias move recorded here that serving processes
	// were not told about at once (Kafka unreachable); they follow on their next
	// reconcile with the registry.
	ErrNotAnnounced = errors.New("alias moved but not announced")
)

// Lineage records where a version came from.
type Lineage struct {
	DataPath    string             `json:"data_path,omitempty"`
	DataSHA256  string             `json:"data_sha256,omitempty"`
	Snapshot    string             `json:"snapshot,omitempty"` // dataset snapshot id
	Parent      string             `json:"parent,omitempty"`   // parent version
	Metrics     map[string]float64 `json:"metrics,omitempty"`
	HyperParams map[string]any     `json:"hyper_params,omitempty"`
	CodeVersion string             `json:"code_version,omitempty"`
	// Trigger says what started the run that made it: manual, schedule,
	// threshold (retraining), or a training job.
	Trigger string `json:"trigger,omitempty"`
	// Gate is the comparison with the champion a retraining run made
	// before deciding whether to promote this version.
	Gate *Gate `json:"gate,omitempty"`
}

// Gate is a challenger-vs-champion decision on the model's fixed
// evaluation set: promote only if the challenger's macro-F1 is at least the
// champion's minus Epsilon and no class's recall fell by more than Delta.
type Gate struct {
	Passed            bool               `json:"passed"`
	Champion          string             `json:"champion,omitempty"` // version compared against; "" for a first model
	ChampionMacroF1   float64            `json:"champion_macro_f1"`
	ChallengerMacroF1 float64            `json:"challenger_macro_f1"`
	Epsilon           float64            `json:"epsilon"`
	Delta             float64            `json:"delta"`
	MinSupport        int                `json:"min_support"`
	RecallDeltas      map[string]float64 `json:"recall_deltas,omitempty"` // challenger - champion, per class
	Reasons           []string           `json:"reasons,omitempty"`       // why it failed
	EvalSet           string             `json:"eval_set,omitempty"`      // SHA-256 of the evaluation rows
	EvalRows          int                `json:"eval_rows"`
}

// LoadReport is what one serving process saw loading a version.
type LoadReport struct {
	Instance string    `json:"instance"`
	OK       bool      `json:"ok"`
	Error    string    `json:"error,omitempty"`
	At       time.Time `json:"at"`
}

// Version is one immutable registered bundle.
type Version struct {
	Model     string       `json:"model"`
	Version   string       `json:"version"` // "v1", "v2", ... assigned in order per model
	Hash      string       `json:"hash"`    // "sha256:<hex>" over the bundle's content checksums
	CreatedAt time.Time    `json:"created_at"`
	CreatedBy string       `json:"created_by,omitempty"`
	Lineage   Lineage      `json:"lineage"`
	Dir       string       `json:"dir"`             // absolute path of the version's bundle directory
	Loads     []LoadReport `json:"loads,omitempty"` // latest report per instance, filled by Get/Versions
}

// Move is one alias change; From is "" when the alias was new, To is "" when
// it was removed.
type Move struct {
	Model string    `json:"model"`
	Alias string    `json:"alias"`
	From  string    `json:"from,omitempty"`
	To    string    `json:"to,omitempty"`
	Kind  string    `json:"kind"` // KindSet, KindPromote, KindRollback or KindRemove
	Who   string    `json:"who,omitempty"`
	Why   string    `json:"why,omitempty"`
	At    time.Time `json:"at"`
}

// Store is a model registry.
type Store interface {
	Models(ctx context.Context) ([]string, error) // sorted
	Register(ctx context.Context, name, bundleDir string, l Lineage, who string) (Version, error)
	Versions(ctx context.Context, name string) ([]Version, error) // ascending v1, v2, ...
	Get(ctx context.Context, name, version string) (Version, error)
	Aliases(ctx context.Context, name string) (map[string]string, error) // alias -> version
	Resolve(ctx context.Context, name, alias string) (Version, error)
	SetAlias(ctx context.Context, name, alias, version, who, why string) (Move, error)
	RemoveAlias(ctx context.Context, name, alias, who, why string) (Move, error)
	Promote(ctx context.Context, name, version, who, why string) (Move, error) // SetAlias(Champion) with Kind "promote"
	Rollback(ctx context.Context, name, who, why string) (Move, error)
	History(ctx context.Context, name string) ([]Move, error) // oldest first, all aliases
	ReportLoad(ctx context.Context, name, version string, r LoadReport) error
}

// Options configures a store.
type Options struct {
	// Verify, when set, is called with a version's directory before an alias
	// is moved to it (Promote, SetAlias, Rollback); an error refuses the move
	// (wrapped with ErrInvalid and the reason). Serving code passes a
	// function that opens the bundle in ONNX Runtime.
	Verify func(dir string) error
	Now    func() time.Time // default time.Now
}

// checkName validates a model or alias name, ^[a-z0-9][a-z0-9_-]{0,63}$;
// what says which it is. Names become directory names, so nothing else is
// allowed.
func checkName(what, s string) error {
	ok := len(s) >= 1 && len(s) <= 64
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '_' || c == '-')
	}
	if !ok {
		return fmt.Errorf("%s %q: %w (want 1-64 of a-z 0-9 _ -, starting with a letter or digit)", what, s, ErrInvalid)
	}
	return nil
}

// versionNum parses "vN" (^v[1-9][0-9]*$); ok is false for anything else,
// including numbers too large to order.
func versionNum(s string) (n int, ok bool) {
	if len(s) < 2 || s[0] != 'v' || s[1] == '0' {
		return 0, false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s[1:])
	return n, err == nil
}

func checkVersion(s string) error {
	if _, ok := versionNum(s); !ok {
		return fmt.Errorf("version %q: %w (want v1, v2, ...)", s, ErrInvalid)
	}
	return nil
}
