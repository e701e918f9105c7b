// Command triage-healthcheck is the container health probe of the Triage
// images. The runtime image is distroless (no shell, curl or wget), so the
// Dockerfile's HEALTHCHECK and the compose file's healthchecks run this
// static binary instead: it GETs a path (default /healthz) on the metrics
// listener and exits 0 on HTTP 200, 1 otherwise.
//
// Usage: triage-healthcheck [PATH] [ADDR]
//
// ADDR defaults to $TRIAGE_METRICS_ADDR (the same variable that sets
// `triage run --metrics-addr`), then 127.0.0.1:9464. A wildcard host
// (0.0.0.0, ::, or none) is probed on the loopback address.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

const defaultAddr = "127.0.0.1:9464"

func main() {
	path, addr := "/healthz", os.Getenv("TRIAGE_METRICS_ADDR")
	if len(os.Args) > 1 {
		path = os.Args[1]
	}
	if len(os.Args) > 2 {
		addr = os.Args[2]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	if err := probe(ctx, addr, path); err != nil {
		fmt.Fprintln(os.Stderr, "triage-healthcheck:", err)
		os.Exit(1)
	}
}

// target is the URL probed for a listen address and a path.
func target(addr, path string) (string, error) {
	if addr == "" {
		addr = defaultAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("metrics address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

func probe(ctx context.Context, addr, path string) error {
	url, err := target(addr, path)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
