package serving

import (
	"context"
	"fmt"

	"github.com/triage-ml/triage/registry"
)

// ErrNotAnnounced marks an alias move the registry recorded but the updates
// topic did not receive: serving processes pick it up on their next
// reconcile instead of within seconds.
var ErrNotAnnounced = registry.ErrNotAnnounced

// Admin moves aliases in the registry and announces each move, so every
// serving process follows. The CLI, the gateway's admin routes and the
// trainer all promote through it.
type Admin struct {
	registry.Store
	// Announce publishes a recorded move (Announcer.Announce); nil only
	// records it.
	Announce func(ctx context.Context, mv registry.Move) error
	// Mirror, when set, repeats a recorded move elsewhere (the tracking
	// server's model registry); it logs its own failures.
	Mirror func(ctx context.Context, mv registry.Move)
}

func (a Admin) announce(ctx context.Context, mv registry.Move, err error) (registry.Move, error) {
	if err == nil && a.Mirror != nil && mv.Kind != "" {
		a.Mirror(ctx, mv)
	}
	if err != nil || a.Announce == nil || mv.Kind == "" {
		return mv, err
	}
	if err := a.Announce(ctx, mv); err != nil {
		return mv, fmt.Errorf("%w (%s %s -> %s): %w", ErrNotAnnounced, mv.Model, mv.Alias, mv.To, err)
	}
	return mv, nil
}

// Promote makes version the champion of name.
func (a Admin) Promote(ctx context.Context, name, version, who, why string) (registry.Move, error) {
	mv, err := a.Store.Promote(ctx, name, version, who, why)
	return a.announce(ctx, mv, err)
}

// Rollback moves the champion back to the version before it.
func (a Admin) Rollback(ctx context.Context, name, who, why string) (registry.Move, error) {
	mv, err := a.Store.Rollback(ctx, name, who, why)
	return a.announce(ctx, mv, err)
}

// SetAlias points alias at version.
func (a Admin) SetAlias(ctx context.Context, name, alias, version, who, why string) (registry.Move, error) {
	mv, err := a.Store.SetAlias(ctx, name, alias, version, who, why)
	return a.announce(ctx, mv, err)
}

// ErrChampionRequired refuses removing the champion: serving processes would
// keep what they loaded while restarted ones served nothing.
var ErrChampionRequired = fmt.Errorf("the champion alias cannot be removed; promote another version or roll back: %w", registry.ErrInvalid)

// RemoveAlias deletes alias (not the champion).
func (a Admin) RemoveAlias(ctx context.Context, name, alias, who, why string) (registry.Move, error) {
	if alias == registry.Champion {
		return registry.Move{}, ErrChampionRequired
	}
	mv, err := a.Store.RemoveAlias(ctx, name, alias, who, why)
	return a.announce(ctx, mv, err)
}
