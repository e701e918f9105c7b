package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFailingRoleStopsTheOthers(t *testing.T) {
	var stopped atomic.Bool
	boom := errors.New("boom")
	m := New(slog.New(slog.DiscardHandler),
		Role{Name: "steady", Run: func(ctx context.Context) error { <-ctx.Done(); stopped.Store(true); return nil }},
		Role{Name: "broken", Run: func(ctx context.Context) error { time.Sleep(10 * time.Millisecond); return boom }},
	)
	err := m.Run(context.Background())
	if !errors.Is(err, boom) || err.Error() != "broken: boom" {
		t.Fatalf("Run = %v, want broken: boom", err)
	}
	if !stopped.Load() {
		t.Error("steady role was not stopped")
	}
}

func TestCleanShutdownAndReadiness(t *testing.T) {
	var ready atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	m := New(slog.New(slog.DiscardHandler),
		Role{Name: "a", Run: func(ctx context.Context) error { <-ctx.Done(); return nil }, Ready: ready.Load},
	)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	time.Sleep(20 * time.Millisecond)
	if ok, not := m.Ready(); ok || len(not) != 1 || not[0] != "a" {
		t.Errorf("Ready = %v %v before the role is ready", ok, not)
	}
	ready.Store(true)
	if ok, _ := m.Ready(); !ok {
		t.Error("not ready after the role became ready")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("clean shutdown returned %v", err)
	}
	if ok, _ := m.Ready(); ok {
		t.Error("ready after shutdown")
	}
	if err := New(slog.New(slog.DiscardHandler)).Run(context.Background()); err == nil {
		t.Error("no roles: no error")
	}
}

func TestRolesStopInReverseOrder(t *testing.T) {
	var order []string
	var mu sync.Mutex
	record := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond) // a slow stop must still finish before the earlier role is told
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := New(slog.New(slog.DiscardHandler),
		Role{Name: "broker", Run: record("broker")},
		Role{Name: "consumer", Run: record("consumer")},
		Role{Name: "gateway", Run: record("gateway")},
	)
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ","); got != "gateway,consumer,broker" {
		t.Errorf("stop order %s, want gateway,consumer,broker", got)
	}
}

// events is a goroutine-safe log of what roles did.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.log = append(e.log, s)
	e.mu.Unlock()
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.log, ",")
}

// within fails the test if ch does not deliver within d.
func within[T any](t *testing.T, d time.Duration, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: not within %v", what, d)
		var zero T
		return zero
	}
}

func runAsync(m *Manager, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	return done
}

func TestDepsOrderStartAndReverseStop(t *testing.T) {
	var ev events
	allUp := make(chan struct{})
	role := func(name string, deps ...string) Role {
		return Role{
			Name: name, Deps: deps,
			Start: func(context.Context) error { ev.add("start:" + name); return nil },
			Run: func(ctx context.Context) error {
				if name == "gateway" {
					close(allUp)
				}
				<-ctx.Done()
				return nil
			},
			Stop: func(context.Context) error { ev.add("stop:" + name); return nil },
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New(slog.New(slog.DiscardHandler),
		role("gateway", "consumer", "models"),
		role("consumer", "broker", "models", "absent"), // absent: not in the set, ignored
		role("models", "broker"),
		role("broker"),
	)
	done := runAsync(m, ctx)
	within(t, 5*time.Second, "gateway running", allUp)
	if ok, not := m.Ready(); !ok {
		t.Errorf("not ready with every role running: %v", not)
	}
	cancel()
	if err := within(t, 5*time.Second, "Run returns", done); err != nil {
		t.Fatalf("Run = %v", err)
	}
	want := "start:broker,start:models,start:consumer,start:gateway," +
		"stop:gateway,stop:consumer,stop:models,stop:broker"
	if got := ev.String(); got != want {
		t.Errorf("events\n got %s\nwant %s", got, want)
	}
}

func TestDependencyCycleAndDuplicate(t *testing.T) {
	var started atomic.Int32
	start := func(context.Context) error { started.Add(1); return nil }
	m := New(slog.New(slog.DiscardHandler),
		Role{Name: "free", Start: start},
		Role{Name: "a", Deps: []string{"c"}, Start: start},
		Role{Name: "b", Deps: []string{"a"}, Start: start},
		Role{Name: "c", Deps: []string{"b"}, Start: start},
	)
	err := within(t, 5*time.Second, "Run with a cycle returns", runAsync(m, context.Background()))
	if err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("Run with a cycle = %v, want a cycle error", err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("cycle error %q does not name %s", err, name)
		}
	}
	if n := started.Load(); n != 0 {
		t.Errorf("%d roles started despite the cycle", n)
	}

	dup := New(slog.New(slog.DiscardHandler), Role{Name: "a"}, Role{Name: "a"})
	err = within(t, 5*time.Second, "Run with a duplicate returns", runAsync(dup, context.Background()))
	if err == nil || !strings.Contains(err.Error(), `"a" declared twice`) {
		t.Errorf("Run with a duplicate role = %v", err)
	}
}

func TestStartPhaseCompletesBeforeDependents(t *testing.T) {
	dbStarting, dbGo := make(chan struct{}), make(chan struct{})
	appStarting, appGo := make(chan struct{}), make(chan struct{})
	var dbStarted atomic.Bool
	var early atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New(slog.New(slog.DiscardHandler),
		Role{Name: "app", Deps: []string{"db"},
			Start: func(context.Context) error {
				early.Store(!dbStarted.Load())
				close(appStarting)
				<-appGo
				return nil
			}},
		Role{Name: "db",
			Start: func(context.Context) error {
				close(dbStarting)
				<-dbGo
				dbStarted.Store(true)
				return nil
			}},
	)
	done := runAsync(m, ctx)

	within(t, 5*time.Second, "db starting", dbStarting)
	select {
	case <-appStarting:
		t.Fatal("app started while db was still starting")
	default:
	}
	if ok, not := m.Ready(); ok || strings.Join(not, ",") != "app,db" {
		t.Errorf("Ready = %v %v while db starts, want not ready: app,db", ok, not)
	}
	close(dbGo)
	within(t, 5*time.Second, "app starting", appStarting)
	if early.Load() {
		t.Error("app's Start began before db's Start returned")
	}
	if ok, not := m.Ready(); ok || strings.Join(not, ",") != "app" {
		t.Errorf("Ready = %v %v while app starts, want not ready: app", ok, not)
	}
	close(appGo)
	deadline := time.Now().Add(5 * time.Second)
	for ok, _ := m.Ready(); !ok; ok, _ = m.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("not ready after every Start returned")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := within(t, 5*time.Second, "Run returns", done); err != nil {
		t.Errorf("Run = %v", err)
	}
}

func TestFailingStartStopsStartedRoles(t *testing.T) {
	var ev events
	boom := errors.New("bootstrap failed")
	var runCtxEnded atomic.Bool
	m := New(slog.New(slog.DiscardHandler),
		Role{Name: "broker",
			Start: func(context.Context) error { ev.add("start:broker"); return nil },
			Run: func(ctx context.Context) error {
				<-ctx.Done()
				runCtxEnded.Store(true)
				ev.add("run-end:broker")
				return nil
			},
			Stop: func(context.Context) error { ev.add("stop:broker"); return nil }},
		Role{Name: "models", Deps: []string{"broker"},
			Start: func(context.Context) error { ev.add("start:models"); return boom }},
		Role{Name: "gateway", Deps: []string{"models"},
			Start: func(context.Context) error { ev.add("start:gateway"); return nil }},
	)
	done := runAsync(m, context.Background())
	err := within(t, 5*time.Second, "Run returns after a failed Start", done)
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "models:") {
		t.Fatalf("Run = %v, want an error naming models and wrapping the Start error", err)
	}
	if !runCtxEnded.Load() {
		t.Error("broker's Run context did not end")
	}
	if got, want := ev.String(), "start:broker,start:models,run-end:broker,stop:broker"; got != want {
		t.Errorf("events\n got %s\nwant %s", got, want)
	}
	if ok, _ := m.Ready(); ok {
		t.Error("ready after a failed start")
	}
}

func TestShutdownTimeoutNamesStuckRole(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // let the stuck goroutine end
	running := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New(slog.New(slog.DiscardHandler),
		Role{Name: "stuck", Run: func(context.Context) error {
			close(running)
			<-release // ignores cancellation
			return nil
		}},
	)
	m.ShutdownTimeout = 200 * time.Millisecond
	done := runAsync(m, ctx)
	within(t, 5*time.Second, "stuck running", running)
	cancel()
	begin := time.Now()
	err := within(t, 5*time.Second, "Run returns despite a stuck role", done)
	took := time.Since(begin)
	if err == nil || !strings.Contains(err.Error(), "stuck") || !strings.Contains(err.Error(), "deadline") {
		t.Fatalf("Run = %v, want a shutdown deadline error naming stuck", err)
	}
	if took < 150*time.Millisecond || took > 2*time.Second {
		t.Errorf("Run returned %v after cancellation, want about 200ms", took)
	}
}

func TestStopAfterRunBeforeDependencies(t *testing.T) {
	var ev events
	var dbStopped atomic.Bool
	var dbCtx atomic.Pointer[context.Context]
	appRunning := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New(slog.New(slog.DiscardHandler),
		Role{Name: "app", Deps: []string{"db"},
			Run: func(ctx context.Context) error {
				close(appRunning)
				<-ctx.Done()
				time.Sleep(20 * time.Millisecond) // a drain that takes a while
				ev.add("run-end:app")
				return nil
			},
			Stop: func(context.Context) error {
				ev.add("stop:app")
				if dbStopped.Load() {
					t.Error("db stopped before app's Stop")
				}
				if c := dbCtx.Load(); c == nil || (*c).Err() != nil {
					t.Error("db's Run context ended before app's Stop")
				}
				return nil
			}},
		Role{Name: "db",
			Run: func(ctx context.Context) error {
				dbCtx.Store(&ctx)
				<-ctx.Done()
				ev.add("run-end:db")
				return nil
			},
			Stop: func(context.Context) error { dbStopped.Store(true); ev.add("stop:db"); return nil }},
	)
	done := runAsync(m, ctx)
	within(t, 5*time.Second, "app running", appRunning)
	cancel()
	if err := within(t, 5*time.Second, "Run returns", done); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got, want := ev.String(), "run-end:app,stop:app,run-end:db,stop:db"; got != want {
		t.Errorf("events\n got %s\nwant %s", got, want)
	}
}

// A Start that gives up with context.Canceled on its own (not because the
// set is stopping) is a failure: Run returns it rather than hanging.
func TestStartCanceledOnItsOwnFails(t *testing.T) {
	m := New(slog.New(slog.DiscardHandler),
		Role{Name: "first", Run: func(ctx context.Context) error { <-ctx.Done(); return nil }},
		Role{Name: "dialer", Deps: []string{"first"}, Start: func(context.Context) error {
			return fmt.Errorf("dial: %w", context.Canceled)
		}},
	)
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "dialer") {
			t.Fatalf("Run = %v, want an error naming dialer", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run hung after a Start returned context.Canceled on its own")
	}
}
