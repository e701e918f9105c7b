package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/triage-ml/triage/gateway"
)

// ensureDevKey gives `triage dev` working auth out of the box: without
// --api-keys-file (and without --no-auth) it uses DATA_DIR/api-keys.yaml,
// creating it with one admin key whose secret goes to DATA_DIR/dev-api-key
// (mode 0600) — the only place it is stored. It returns that path when it
// created the key.
func ensureDevKey(gf *gatewayFlags, dataDir string, log *slog.Logger) (string, error) {
	if gf.apiKeysFile != "" || gf.noAuth {
		return "", nil
	}
	gf.apiKeysFile = filepath.Join(dataDir, "api-keys.yaml")
	if _, err := os.Stat(gf.apiKeysFile); err == nil {
		return "", nil
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", err
	}
	secret, err := gateway.AddKey(gf.apiKeysFile, "dev", []string{"admin"}, 0, 0)
	if err != nil {
		return "", fmt.Errorf("create dev API key: %w", err)
	}
	keyFile := filepath.Join(dataDir, "dev-api-key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write dev API key: %w", err)
	}
	log.Info("created dev API key", "keys_file", gf.apiKeysFile, "secret_file", keyFile)
	return keyFile, nil
}
