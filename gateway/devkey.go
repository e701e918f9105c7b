package gateway

import (
	"fmt"
	"os"
	"path/filepath"
)

// EnsureDevKey gives a development setup working auth out of the box: it
// returns DIR/api-keys.yaml, creating it when missing with one admin key
// whose secret goes to DIR/dev-api-key (mode 0600), the only place it is
// stored. secretFile is that path when the key was created now, else "".
func EnsureDevKey(dir string) (keysFile, secretFile string, err error) {
	keysFile = filepath.Join(dir, "api-keys.yaml")
	if _, err := os.Stat(keysFile); err == nil {
		return keysFile, "", nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("create dev API key: %w", err)
	}
	secret, err := AddKey(keysFile, "dev", []string{ScopeAdmin}, 0, 0)
	if err != nil {
		return "", "", fmt.Errorf("create dev API key: %w", err)
	}
	secretFile = filepath.Join(dir, "dev-api-key")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write dev API key: %w", err)
	}
	return keysFile, secretFile, nil
}
