package gateway

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAddKeyAndLoad(t *testing.T) {
	for _, name := range []string{"keys.yaml", "keys.json"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "conf", name)
			s1, err := AddKey(path, "support-bot", []string{ScopePredict, ScopeFeedback}, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			s2, err := AddKey(path, "ops", []string{ScopeAdmin}, 5, 10)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{s1, s2} {
				raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(s, SecretPrefix))
				if !strings.HasPrefix(s, SecretPrefix) || err != nil || len(raw) != 32 {
					t.Errorf("secret %q: want trg_ + base64url of 32 bytes", s)
				}
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("mode %v, want 0600", st.Mode().Perm())
			}
			raw, _ := os.ReadFile(path)
			if strings.Contains(string(raw), s1) || strings.Contains(string(raw), strings.TrimPrefix(s2, SecretPrefix)) {
				t.Fatal("keys file holds a secret")
			}
			keys, err := LoadKeys(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != 2 || keys[0].Name != "support-bot" || keys[1].Rate != 5 || keys[1].Burst != 10 || keys[0].CreatedAt.IsZero() {
				t.Fatalf("loaded %+v", keys)
			}
			kr := newKeyring(keys, false, 50, 100)
			if p := kr.lookup(s1); p == nil || p.key.Name != "support-bot" || !p.key.has(ScopeFeedback) || p.key.has(ScopeTrain) {
				t.Errorf("lookup s1: %+v", p)
			}
			if p := kr.lookup(s2); p == nil || p.key.Name != "ops" || !p.key.has(ScopeTrain) || p.limiter.Burst() != 10 {
				t.Errorf("lookup s2 (admin implies all scopes)")
			}
			if p := kr.lookup(s1 + "x"); p != nil {
				t.Error("altered secret accepted")
			}
			if p := kr.lookup(""); p != nil {
				t.Error("empty secret accepted")
			}
			if _, err := AddKey(path, "ops", []string{ScopePredict}, 0, 0); err == nil || !strings.Contains(err.Error(), "exists") {
				t.Errorf("duplicate name: %v", err)
			}
		})
	}
}

func TestLoadKeysErrors(t *testing.T) {
	dir := t.TempDir()
	_, good, _ := NewKey("a", []string{ScopePredict}, 0, 0)
	for _, tc := range []struct {
		name, content, want string
	}{
		{"empty.yaml", "", "no keys"},
		{"bad.yaml", "keys: [{name: a, salt: zz, hash: 00, scopes: [predict]}]", "salt"},
		{"scope.yaml", "keys: [{name: a, salt: " + good.Salt + ", hash: " + good.Hash + ", scopes: [root]}]", `unknown scope "root"`},
		{"noscope.yaml", "keys: [{name: a, salt: " + good.Salt + ", hash: " + good.Hash + "}]", "no scopes"},
		{"dup.yaml", "keys: [{name: a, salt: " + good.Salt + ", hash: " + good.Hash + ", scopes: [predict]}, {name: a, salt: " + good.Salt + ", hash: " + good.Hash + ", scopes: [predict]}]", "duplicate"},
		{"extra.yaml", "keys: [{name: a, secret: x, salt: " + good.Salt + ", hash: " + good.Hash + ", scopes: [predict]}]", "secret"},
		{"extra.json", `{"keys":[{"name":"a","secret":"x"}]}`, "secret"},
		{"name.json", `{"keys":[{"name":"a b","salt":"` + good.Salt + `","hash":"` + good.Hash + `","scopes":["predict"]}]}`, "name"},
	} {
		p := filepath.Join(dir, tc.name)
		os.WriteFile(p, []byte(tc.content), 0o600)
		if _, err := LoadKeys(p); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v, want an error naming the file and %q", tc.name, err, tc.want)
		}
	}
	if _, err := LoadKeys(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("missing file loaded")
	}
	if _, _, err := NewKey("x", []string{"superuser"}, 0, 0); err == nil {
		t.Error("unknown scope accepted by NewKey")
	}
}
