// Package lifecycle runs Triage's roles as one set, the shape of Loki's
// module manager reduced to what Triage needs: each role declares the roles
// it depends on, has a starting phase (connect, load models, catch up,
// bootstrap) that completes before its dependents start, and a running loop
// that lasts until its context ends. The first role to fail stops the
// others; roles stop in reverse dependency order, all within one shutdown
// deadline; readiness reflects every role.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Role is one named service.
type Role struct {
	Name string
	// Deps are roles that must have started before this one starts, and
	// that stop only after it has stopped. Names not in the set are ignored
	// (the caller decides which roles run).
	Deps []string
	// Start, when set, runs before Run and before any dependent starts; an
	// error stops the set. It should return promptly when ctx ends.
	Start func(ctx context.Context) error
	// Run, when set, blocks until ctx is cancelled (returning nil) or the
	// role fails. A role without Run only starts and stops.
	Run func(ctx context.Context) error
	// Stop, when set, releases what Start acquired, after Run returned and
	// after every dependent stopped.
	Stop func(ctx context.Context) error
	// Ready reports whether the role is serving; nil means ready once
	// started.
	Ready func() bool
}

// ErrShutdownDeadline is returned when roles were still running at the
// shutdown deadline: what they use must not be released under them.
var ErrShutdownDeadline = errors.New("lifecycle: shutdown deadline")

// DefaultShutdownTimeout bounds the whole ordered stop.
const DefaultShutdownTimeout = 15 * time.Second

// stopGrace is what each role still gets once the deadline has passed.
const stopGrace = 50 * time.Millisecond

// Manager runs roles together.
type Manager struct {
	log   *slog.Logger
	roles []Role
	// ShutdownTimeout bounds the ordered stop of every role together;
	// default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	mu      sync.Mutex
	started map[string]bool
}

// New returns a manager for roles.
func New(log *slog.Logger, roles ...Role) *Manager {
	return &Manager{log: log, roles: roles, started: map[string]bool{}}
}

// Add appends a role; call before Run.
func (m *Manager) Add(r Role) { m.roles = append(m.roles, r) }

// order sorts roles so each comes after its dependencies; among roles
// without an ordering constraint, declaration order is kept.
func order(roles []Role) ([]Role, error) {
	index := map[string]int{}
	for i, r := range roles {
		if _, dup := index[r.Name]; dup {
			return nil, fmt.Errorf("lifecycle: role %q declared twice", r.Name)
		}
		index[r.Name] = i
	}
	const (
		unvisited = iota
		visiting
		done
	)
	state := make([]int, len(roles))
	var out []Role
	var visit func(i int, path []string) error
	visit = func(i int, path []string) error {
		switch state[i] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("lifecycle: dependency cycle: %s", strings.Join(append(path, roles[i].Name), " -> "))
		}
		state[i] = visiting
		for _, d := range roles[i].Deps {
			if j, ok := index[d]; ok {
				if err := visit(j, append(path, roles[i].Name)); err != nil {
					return err
				}
			}
		}
		state[i] = done
		out = append(out, roles[i])
		return nil
	}
	for i := range roles {
		if err := visit(i, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Run starts every role in dependency order and waits. When ctx ends or
// any role's Run returns, the roles stop in reverse order, each after its
// dependents: the consumer finishes its batch and leaves its group before
// the broker it talks to goes away. The first error is returned, wrapped
// with the role's name; a stop that overruns ShutdownTimeout returns an
// error naming the roles still running. A clean shutdown returns nil.
func (m *Manager) Run(ctx context.Context) error {
	if len(m.roles) == 0 {
		return errors.New("lifecycle: no roles to run")
	}
	roles, err := order(m.roles)
	if err != nil {
		return err
	}
	stopAll, fail := context.WithCancel(context.Background())
	defer fail()
	defer context.AfterFunc(ctx, fail)()

	var (
		errMu    sync.Mutex
		firstErr error
	)
	record := func(name string, err error) {
		// Cancellation is how roles are stopped: not an error once the set is
		// stopping, but a role giving up on its own is one.
		if err == nil || (errors.Is(err, context.Canceled) && stopAll.Err() != nil) {
			return
		}
		m.log.Error("role failed", "role", name, "err", err)
		errMu.Lock()
		if firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", name, err)
		}
		errMu.Unlock()
		fail()
	}

	type running struct {
		role   Role
		cancel context.CancelFunc
		done   chan struct{}
	}
	var up []running
	var g errgroup.Group
	for _, r := range roles {
		if stopAll.Err() != nil {
			break
		}
		// Starting and running phases get a context that outlives the
		// parent's cancellation: a role is stopped by the sequencer below,
		// in order, not all at once by the signal.
		rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		if r.Start != nil {
			m.log.Info("role starting", "role", r.Name)
			stopStart := context.AfterFunc(stopAll, cancel)
			err := r.Start(rctx)
			stopStart()
			if err != nil {
				cancel()
				record(r.Name, fmt.Errorf("start: %w", err))
				fail()
				break
			}
		}
		if stopAll.Err() != nil { // interrupted while starting: stop what started
			cancel()
			if r.Stop != nil {
				sctx, scancel := context.WithTimeout(context.Background(), m.shutdownTimeout())
				record(r.Name, r.Stop(sctx))
				scancel()
			}
			break
		}
		run := running{role: r, cancel: cancel, done: make(chan struct{})}
		up = append(up, run)
		m.setStarted(r.Name, true)
		m.log.Info("role running", "role", r.Name)
		g.Go(func() error {
			defer close(run.done)
			if r.Run == nil {
				<-rctx.Done()
				return nil
			}
			err := r.Run(rctx)
			// Recorded before the set is marked stopping, so a role that gave
			// up on its own (even with context.Canceled) counts as failed.
			record(r.Name, err)
			fail() // any role ending, cleanly or not, takes the set down
			return nil
		})
	}

	<-stopAll.Done()
	deadline := time.Now().Add(m.shutdownTimeout())
	var stuck []string
	for i := len(up) - 1; i >= 0; i-- {
		r := up[i]
		m.setStarted(r.role.Name, false)
		r.cancel()
		// Past the deadline, a role still gets a short grace: the one that
		// overran should not make the next look stuck by a timer race.
		wait := max(time.Until(deadline), stopGrace)
		select {
		case <-r.done:
		case <-time.After(wait):
			stuck = append(stuck, r.role.Name)
			continue
		}
		if r.role.Stop != nil {
			sctx, cancel := context.WithDeadline(context.Background(), deadline)
			record(r.role.Name, r.role.Stop(sctx))
			cancel()
		}
		m.log.Info("role stopped", "role", r.role.Name)
	}
	if len(stuck) > 0 {
		slices.Reverse(stuck)
		return fmt.Errorf("%w: %v passed with roles still running: %s",
			ErrShutdownDeadline, m.shutdownTimeout(), strings.Join(stuck, ", "))
	}
	_ = g.Wait()
	return firstErr
}

func (m *Manager) shutdownTimeout() time.Duration {
	if m.ShutdownTimeout > 0 {
		return m.ShutdownTimeout
	}
	return DefaultShutdownTimeout
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
