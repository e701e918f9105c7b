// Package lifecycle runs Triage's roles as one set: each role starts (connect,
// load, catch up), then runs until its context ends. The first role to fail
// stops the others, and readiness reflects every role — the shape of Loki's
// module manager, reduced to an errgroup.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/sync/errgroup"
)

// Role is one named service.
type Role struct {
	Name string
	// Run blocks until ctx is cancelled (returning nil) or the role fails.
	Run func(ctx context.Context) error
	// Ready reports whether the role is serving; nil means ready once Run started.
	Ready func() bool
}

// Manager runs roles together.
type Manager struct {
	log   *slog.Logger
	roles []Role

	mu      sync.Mutex
	started map[string]bool
}

// New returns a manager for roles, started in the given order.
func New(log *slog.Logger, roles ...Role) *Manager {
	return &Manager{log: log, roles: roles, started: map[string]bool{}}
}

// Add appends a role; call before Run.
func (m *Manager) Add(r Role) { m.roles = append(m.roles, r) }

// Run starts every role and waits. Roles stop in reverse order of
// declaration, each after the ones declared later have returned: the
// consumer finishes its batch and leaves its group before the broker it
// talks to goes away. A role returning an error starts that same ordered
// shutdown; the first error is returned, wrapped with the role's name. A
// clean shutdown (ctx cancelled, every role returning nil) returns nil.
func (m *Manager) Run(ctx context.Context) error {
	if len(m.roles) == 0 {
		return errors.New("lifecycle: no roles to run")
	}
	// stopAll fires on the parent's cancellation or the first role to end.
	stopAll, fail := context.WithCancel(context.Background())
	defer fail()
	stopWatch := context.AfterFunc(ctx, fail)
	defer stopWatch()

	n := len(m.roles)
	ctxs := make([]context.Context, n)
	cancels := make([]context.CancelFunc, n)
	done := make([]chan struct{}, n)
	for i := range m.roles {
		ctxs[i], cancels[i] = context.WithCancel(context.WithoutCancel(ctx))
		done[i] = make(chan struct{})
	}
	// The shutdown sequencer: last role first, each waiting for the next.
	go func() {
		<-stopAll.Done()
		for i := n - 1; i >= 0; i-- {
			cancels[i]()
			<-done[i]
		}
	}()
	var g errgroup.Group
	for i, r := range m.roles {
		g.Go(func() error {
			defer close(done[i])
			m.setStarted(r.Name, true)
			m.log.Info("role starting", "role", r.Name)
			err := r.Run(ctxs[i])
			m.setStarted(r.Name, false)
			fail() // any role ending, cleanly or not, takes the set down
			if err != nil && !errors.Is(err, context.Canceled) {
				m.log.Error("role failed", "role", r.Name, "err", err)
				return fmt.Errorf("%s: %w", r.Name, err)
			}
			m.log.Info("role stopped", "role", r.Name)
			return nil
		})
	}
	return g.Wait()
}

func (m *Manager) setStarted(name string, v bool) {
	m.mu.Lock()
	m.started[name] = v
	m.mu.Unlock()
}

// Ready reports whether every role is running and ready, and lists those
// that are not.
func (m *Manager) Ready() (bool, []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var notReady []string
	for _, r := range m.roles {
		if !m.started[r.Name] || (r.Ready != nil && !r.Ready()) {
			notReady = append(notReady, r.Name)
		}
	}
	return len(notReady) == 0, notReady
}
