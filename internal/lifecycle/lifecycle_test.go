package lifecycle

import (
	"context"
	"errors"
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
