// Package estest runs scripts/elasticsearch-local for the integration tests
// that need a real Elasticsearch node (monitoring/elastic, the drift test,
// the live Prometheus test), so they start, stop and restart it alike.
package estest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Run runs `scripts/elasticsearch-local ARGS...` from the repository at
// root and returns the last line it printed (the node's URL for start).
func Run(root string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "elasticsearch-local"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// If the test process dies without stopping the node, the node stops itself.
	cmd.Env = append(os.Environ(), fmt.Sprintf("ES_LOCAL_PARENT_PID=%d", os.Getpid()))
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("elasticsearch-local %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	return lines[len(lines)-1], nil
}
