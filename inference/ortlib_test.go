package inference

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Child-process modes: InitORT is once per process and onnxruntime_go keeps
// global state, so loads that are meant to fail run in a re-exec of this
// test binary and report back on stdout.
const (
	envChildMode = "INFERENCE_TEST_CHILD"
	envChildLib  = "INFERENCE_TEST_CHILD_LIB"
	envChildReal = "INFERENCE_TEST_CHILD_REAL_LIB"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envChildMode); mode != "" {
		os.Exit(childMain(mode))
	}
	os.Exit(m.Run())
}

func childMain(mode string) int {
	err := InitORT(os.Getenv(envChildLib))
	fmt.Printf("FIRST_ERR=%v\n", err)
	if err == nil {
		return 2
	}
	if mode == "bogus-then-real" {
		// A failed load must not poison the process: the real library still loads.
		if err := InitORT(os.Getenv(envChildReal)); err != nil {
			fmt.Printf("REAL_ERR=%v\n", err)
			return 3
		}
		fmt.Printf("REAL_OK version=%s\n", ORTRuntimeVersion())
	}
	return 0
}

// runChild re-executes the test binary in child mode and returns its stdout.
func runChild(t *testing.T, mode, lib, realLib string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChildMode+"="+mode, envChildLib+"="+lib, envChildReal+"="+realLib)
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("child %s with %s did not exit cleanly: %v\nstdout:\n%s\nstderr:\n%s", mode, lib, err, out, stderr)
	}
	return string(out)
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFindORTLibraryPrecedence(t *testing.T) {
	root := t.TempDir()
	cached := writeFile(t, filepath.Join(root, ".cache", "onnxruntime", ORTVersion, "libonnxruntime.so.1"), "x")
	fromEnv := writeFile(t, filepath.Join(root, "env", "libonnxruntime.so.1"), "x")
	fromFlag := writeFile(t, filepath.Join(root, "flag", "libonnxruntime.so.1"), "x")
	deep := filepath.Join(root, "a", "b", "c")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(deep)

	check := func(name, explicit, want string) {
		t.Helper()
		got, err := FindORTLibrary(explicit)
		if err != nil {
			t.Fatalf("%s: FindORTLibrary(%q): %v", name, explicit, err)
		}
		if got != want {
			t.Fatalf("%s: FindORTLibrary(%q) = %q, want %q", name, explicit, got, want)
		}
	}

	t.Setenv(EnvORTLib, "")
	check("cache found from a nested working dir", "", cached)

	t.Setenv(EnvORTLib, fromEnv)
	check("env beats cache", "", fromEnv)
	check("flag beats env", fromFlag, fromFlag)

	// A relative explicit path resolves against the working directory.
	t.Chdir(filepath.Join(root, "flag"))
	check("relative flag", "libonnxruntime.so.1", fromFlag)
}

func TestFindORTLibraryMissing(t *testing.T) {
	root := t.TempDir()
	t.Chdir(root)

	t.Run("explicit", func(t *testing.T) {
		missing := filepath.Join(root, "nope", "libonnxruntime.so.1")
		t.Setenv(EnvORTLib, writeFile(t, filepath.Join(root, "env.so"), "x"))
		_, err := FindORTLibrary(missing)
		assertLibErr(t, err, missing, "--ort-lib")
	})
	t.Run("env", func(t *testing.T) {
		missing := filepath.Join(root, "gone", "libonnxruntime.so.1")
		t.Setenv(EnvORTLib, missing)
		_, err := FindORTLibrary("")
		assertLibErr(t, err, missing, "$"+EnvORTLib)
	})
	t.Run("directory", func(t *testing.T) {
		_, err := FindORTLibrary(root)
		assertLibErr(t, err, root, "not a regular file")
	})
	t.Run("search", func(t *testing.T) {
		t.Setenv(EnvORTLib, "")
		_, err := FindORTLibrary("")
		// Every directory from the working dir up to / was tried.
		assertLibErr(t, err,
			filepath.Join(root, cacheRelPath),
			filepath.Join(filepath.Dir(root), cacheRelPath),
			filepath.Join("/", cacheRelPath),
			"ONNXRUNTIME_LIB", "--ort-lib")
	})
}

func assertLibErr(t *testing.T, err error, wants ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error, got nil")
	}
	for _, w := range append(wants, "make onnxruntime", "scripts/fetch-onnxruntime.sh") {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not mention %q:\n%v", w, err)
		}
	}
}

func TestInitORTRejectsBogusLibraries(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"text file": writeFile(t, filepath.Join(dir, "text", "libonnxruntime.so.1"), "this is not a shared library\n"),
		"empty":     writeFile(t, filepath.Join(dir, "empty", "libonnxruntime.so.1"), ""),
		"missing":   filepath.Join(dir, "missing", "libonnxruntime.so.1"),
	}
	// A real ELF library that is not ORT: dlopen succeeds, OrtGetApiBase is absent.
	for _, p := range []string{"/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6"} {
		if isRegularFile(p) {
			cases["non-ORT ELF"] = p
			break
		}
	}
	for name, lib := range cases {
		t.Run(name, func(t *testing.T) {
			out := runChild(t, "bogus", lib, "")
			line := firstLine(out, "FIRST_ERR=")
			for _, w := range []string{lib, "make onnxruntime"} {
				if !strings.Contains(line, w) {
					t.Errorf("InitORT(%s) error does not mention %q:\n%s", lib, w, line)
				}
			}
			if strings.Contains(line, "FIRST_ERR=<nil>") {
				t.Errorf("InitORT(%s) succeeded", lib)
			}
			t.Logf("%s", line)
		})
	}
}

func TestInitORTFailureDoesNotPoison(t *testing.T) {
	realLib := requireORTLib(t)
	bogus := writeFile(t, filepath.Join(t.TempDir(), "libonnxruntime.so.1"), "not ELF")
	out := runChild(t, "bogus-then-real", bogus, realLib)
	if !strings.Contains(out, "REAL_OK version="+ORTVersion) {
		t.Fatalf("after a failed InitORT the real library did not load as %s:\n%s", ORTVersion, out)
	}
}

func TestInitORTIdempotent(t *testing.T) {
	lib := initORT(t)
	if err := InitORT(lib); err != nil {
		t.Fatalf("second InitORT with the same path: %v", err)
	}
	// Same file through a different spelling is still the same library.
	if err := InitORT(filepath.Join(filepath.Dir(lib), ".", filepath.Base(lib))); err != nil {
		t.Fatalf("InitORT with an equivalent path: %v", err)
	}
	other := writeFile(t, filepath.Join(t.TempDir(), "libonnxruntime.so.1"), "x")
	err := InitORT(other)
	if err == nil {
		t.Fatal("InitORT with a different library succeeded")
	}
	for _, w := range []string{lib, other} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not name %q: %v", w, err)
		}
	}
	if got := LoadedORTLibrary(); got != lib {
		t.Errorf("LoadedORTLibrary() = %q, want %q", got, lib)
	}
	if v := ORTRuntimeVersion(); v != ORTVersion {
		t.Errorf("ORTRuntimeVersion() = %q, want %q", v, ORTVersion)
	}
}

func firstLine(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return out
}

// requireORTLib finds the real library or fails the test: a missing library
// is a setup error to fix, not a reason to skip.
func requireORTLib(t *testing.T) string {
	t.Helper()
	lib, err := FindORTLibrary("")
	if err != nil {
		t.Fatalf("ONNX Runtime library needed for this test is missing: %v", err)
	}
	return lib
}

// initORT loads the real library into this process (shared by all tests).
func initORT(t *testing.T) string {
	t.Helper()
	lib := requireORTLib(t)
	if err := InitORT(lib); err != nil {
		t.Fatalf("InitORT(%s): %v", lib, err)
	}
	return lib
}
