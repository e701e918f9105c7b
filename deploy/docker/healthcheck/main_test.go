package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestTarget(t *testing.T) {
	for _, c := range []struct{ addr, path, want string }{
		{"", "/healthz", "http://127.0.0.1:9464/healthz"},
		{"0.0.0.0:9464", "/readyz", "http://127.0.0.1:9464/readyz"},
		{":9470", "healthz", "http://127.0.0.1:9470/healthz"},
		{"[::]:9464", "/healthz", "http://127.0.0.1:9464/healthz"},
		{"10.0.0.5:9464", "/healthz", "http://10.0.0.5:9464/healthz"},
	} {
		got, err := target(c.addr, c.path)
		if err != nil || got != c.want {
			t.Errorf("target(%q, %q) = %q, %v; want %q", c.addr, c.path, got, err, c.want)
		}
	}
	if _, err := target("no-port", "/healthz"); err == nil {
		t.Error("an address without a port was accepted")
	}
}

func TestProbe(t *testing.T) {
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" && !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	if err := probe(ctx, addr, "/healthz"); err != nil {
		t.Fatalf("healthz: %v", err)
	}
	if err := probe(ctx, addr, "/readyz"); err == nil {
		t.Fatal("readyz answered 503 but the probe passed")
	}
	ready.Store(true)
	if err := probe(ctx, addr, "/readyz"); err != nil {
		t.Fatalf("readyz: %v", err)
	}
}
