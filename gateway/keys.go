package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v2"
)

// API key scopes. admin implies every other scope.
const (
	ScopePredict  = "predict"
	ScopeFeedback = "feedback"
	ScopeTrain    = "train"
	ScopeAdmin    = "admin"
)

// Scopes lists every scope a key can hold.
var Scopes = []string{ScopePredict, ScopeFeedback, ScopeTrain, ScopeAdmin}

// SecretPrefix starts every API key secret, so leaked keys are easy to spot
// (secret scanners, logs) and easy to tell from other tokens.
const SecretPrefix = "trg_"

// APIKey is one entry of the API keys file. The file never holds a secret:
// only a random salt and SHA-256(salt || secret).
//
// A fast hash is enough here, unlike for passwords: secrets are 32 bytes
// from crypto/rand (256 bits of entropy), so guessing one from its hash is
// as hard as guessing it outright, and a slow KDF (bcrypt, argon2) would
// only add milliseconds of CPU to every request. The per-key salt keeps two
// files holding the same secret from showing equal hashes.
type APIKey struct {
	Name      string    `json:"name" yaml:"name"`
	Salt      string    `json:"salt" yaml:"salt"` // hex, 16 random bytes
	Hash      string    `json:"hash" yaml:"hash"` // hex SHA-256(salt bytes || secret)
	Scopes    []string  `json:"scopes" yaml:"scopes"`
	Rate      float64   `json:"rate,omitempty" yaml:"rate,omitempty"`   // requests/s; 0 = gateway default
	Burst     int       `json:"burst,omitempty" yaml:"burst,omitempty"` // token bucket size; 0 = gateway default
	CreatedAt time.Time `json:"created_at,omitzero" yaml:"created_at,omitempty"`

	salt, hash []byte // decoded by validate
}

// keysFile is the on-disk document: {"keys": [...]} in JSON or YAML.
type keysFile struct {
	Keys []APIKey `json:"keys" yaml:"keys"`
}

var keyNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// validate checks one entry and decodes its salt and hash.
func (k *APIKey) validate() error {
	if !keyNameRE.MatchString(k.Name) {
		return fmt.Errorf("name %q: use 1-64 letters, digits, '.', '_', '@' or '-'", k.Name)
	}
	var err error
	if k.salt, err = hex.DecodeString(k.Salt); err != nil || len(k.salt) < 8 {
		return fmt.Errorf("key %q: salt must be at least 8 hex-encoded bytes", k.Name)
	}
	if k.hash, err = hex.DecodeString(k.Hash); err != nil || len(k.hash) != sha256.Size {
		return fmt.Errorf("key %q: hash must be a hex SHA-256 (64 hex digits)", k.Name)
	}
	if len(k.Scopes) == 0 {
		return fmt.Errorf("key %q: no scopes (use %s)", k.Name, strings.Join(Scopes, ", "))
	}
	for _, s := range k.Scopes {
		if !slices.Contains(Scopes, s) {
			return fmt.Errorf("key %q: unknown scope %q (use %s)", k.Name, s, strings.Join(Scopes, ", "))
		}
	}
	if k.Rate < 0 || k.Burst < 0 {
		return fmt.Errorf("key %q: rate and burst must not be negative", k.Name)
	}
	return nil
}

// has reports whether the key holds scope (admin holds all).
func (k *APIKey) has(scope string) bool {
	return slices.Contains(k.Scopes, scope) || slices.Contains(k.Scopes, ScopeAdmin)
}

// matches hashes secret with the key's salt and compares in constant time.
func (k *APIKey) matches(secret string) bool {
	return subtle.ConstantTimeCompare(hashSecret(k.salt, secret), k.hash) == 1
}

func hashSecret(salt []byte, secret string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(secret))
	return h.Sum(nil)
}

// LoadKeys reads an API keys file (JSON when the name ends in .json,
// otherwise YAML) and validates every entry.
func LoadKeys(path string) ([]APIKey, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("api keys: %w", err)
	}
	keys, err := parseKeys(path, raw)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("api keys %s: no keys (add one with `triage apikey add --file %s --name NAME --scopes predict`)", path, path)
	}
	return keys, nil
}

func parseKeys(path string, raw []byte) ([]APIKey, error) {
	var f keysFile
	if isJSON(path) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if len(bytes.TrimSpace(raw)) > 0 {
			if err := dec.Decode(&f); err != nil {
				return nil, fmt.Errorf("api keys %s: %w", path, err)
			}
		}
	} else if err := yaml.UnmarshalStrict(raw, &f); err != nil {
		return nil, fmt.Errorf("api keys %s: %w", path, err)
	}
	seen := map[string]bool{}
	for i := range f.Keys {
		k := &f.Keys[i]
		if err := k.validate(); err != nil {
			return nil, fmt.Errorf("api keys %s: entry %d: %w", path, i+1, err)
		}
		if seen[k.Name] {
			return nil, fmt.Errorf("api keys %s: entry %d: duplicate name %q", path, i+1, k.Name)
		}
		seen[k.Name] = true
	}
	return f.Keys, nil
}

func isJSON(path string) bool { return strings.EqualFold(filepath.Ext(path), ".json") }

// NewKey makes a key: the secret to hand to the client once, and the entry
// (salt and hash only) to store.
func NewKey(name string, scopes []string, ratePerSec float64, burst int) (secret string, key APIKey, err error) {
	var raw [32]byte
	var salt [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", APIKey{}, err
	}
	if _, err := rand.Read(salt[:]); err != nil {
		return "", APIKey{}, err
	}
	secret = SecretPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	key = APIKey{Name: name, Salt: hex.EncodeToString(salt[:]), Hash: hex.EncodeToString(hashSecret(salt[:], secret)),
		Scopes: scopes, Rate: ratePerSec, Burst: burst, CreatedAt: time.Now().UTC().Truncate(time.Second)}
	if err := key.validate(); err != nil {
		return "", APIKey{}, err
	}
	return secret, key, nil
}

// AddKey appends a new key to the file at path (creating it with mode 0600)
// and returns the secret, which is stored nowhere: print it once. The file
// is rewritten atomically (temporary file + rename).
func AddKey(path, name string, scopes []string, ratePerSec float64, burst int) (string, error) {
	var keys []APIKey
	raw, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", fmt.Errorf("api keys: %w", err)
	default:
		if keys, err = parseKeys(path, raw); err != nil {
			return "", err
		}
	}
	for _, k := range keys {
		if k.Name == name {
			return "", fmt.Errorf("api keys %s: a key named %q exists; pick another name", path, name)
		}
	}
	secret, key, err := NewKey(name, scopes, ratePerSec, burst)
	if err != nil {
		return "", fmt.Errorf("api keys %s: %w", path, err)
	}
	keys = append(keys, key)
	if err := writeKeys(path, keys); err != nil {
		return "", err
	}
	return secret, nil
}

func writeKeys(path string, keys []APIKey) error {
	var out []byte
	var err error
	if isJSON(path) {
		out, err = json.MarshalIndent(keysFile{Keys: keys}, "", "  ")
		out = append(out, '\n')
	} else {
		out, err = yaml.Marshal(keysFile{Keys: keys})
		out = append([]byte("# Triage API keys: salted SHA-256 hashes only; secrets are shown once by `triage apikey add`.\n"), out...)
	}
	if err != nil {
		return fmt.Errorf("api keys %s: encode: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("api keys: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("api keys: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("api keys: %w", err)
	}
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return fmt.Errorf("api keys: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("api keys: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("api keys: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("api keys: %w", err)
	}
	return nil
}
