// Package inference runs exported ONNX models through ONNX Runtime (via
// github.com/yalue/onnxruntime_go, which dlopens the ORT shared library at
// run time instead of linking it, so the binary builds without ORT present).
package inference

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ORTVersion is the ONNX Runtime release scripts/fetch-onnxruntime.sh pins.
const ORTVersion = "1.24.1"

// EnvORTLib names the environment variable that points at the ORT library.
const EnvORTLib = "ONNXRUNTIME_LIB"

// ortAPIVersion is the ORT C API version onnxruntime_go v1.27.0 requests;
// libraries older than ORT 1.24 refuse it.
const ortAPIVersion = 24

// ortLibName is the soname the fetch script caches (linux/x64 only for now).
const ortLibName = "libonnxruntime.so.1"

// fetchHint is appended to every library error so users know the one fix.
const fetchHint = "run `make onnxruntime` (scripts/fetch-onnxruntime.sh) or set " +
	EnvORTLib + " / --ort-lib"

// cacheRelPath is where the fetch script puts the library, relative to the repo root.
var cacheRelPath = filepath.Join(".cache", "onnxruntime", ORTVersion, ortLibName)

// FindORTLibrary resolves the shared library: explicit (flag) path if
// non-empty, else $ONNXRUNTIME_LIB, else the fetch script's cache searched
// upwards from the working directory and then from the executable's
// directory. An explicit or env path that does not exist is an error rather
// than a fall-through, so a typo never silently loads a different library.
func FindORTLibrary(explicit string) (string, error) {
	if explicit != "" {
		return checkLibFile(explicit, "--ort-lib")
	}
	if env := os.Getenv(EnvORTLib); env != "" {
		return checkLibFile(env, "$"+EnvORTLib)
	}

	var tried []string
	seen := map[string]bool{}
	search := func(start string) (string, bool) {
		for dir := start; ; dir = filepath.Dir(dir) {
			p := filepath.Join(dir, cacheRelPath)
			if !seen[p] {
				seen[p] = true
				tried = append(tried, p)
				if isRegularFile(p) {
					return p, true
				}
			}
			if filepath.Dir(dir) == dir {
				return "", false
			}
		}
	}
	if wd, err := os.Getwd(); err == nil {
		if p, ok := search(wd); ok {
			return p, nil
		}
	}
	if exe, err := os.Executable(); err == nil {
		// Resolve symlinks so an installed symlink finds the real checkout.
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		if p, ok := search(filepath.Dir(exe)); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("ONNX Runtime %s library not found; tried:\n  %s\n%s",
		ORTVersion, strings.Join(tried, "\n  "), fetchHint)
}

func checkLibFile(path, source string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("ONNX Runtime library from %s: %w", source, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("ONNX Runtime library from %s: tried %s: %w; %s", source, abs, err, fetchHint)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("ONNX Runtime library from %s: tried %s: not a regular file; %s", source, abs, fetchHint)
	}
	return abs, nil
}

func isRegularFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// ortState records the one library this process loaded. onnxruntime_go keeps
// the library and environment in package globals, so a second library cannot
// be loaded alongside it.
var ortState struct {
	mu   sync.Mutex
	path string // absolute path of the loaded library; "" until success
}

// InitORT loads the ORT library at libPath and creates the global ORT
// environment, once per process. Calling it again with the same file is a
// no-op; with a different file it is an error. A failed load leaves nothing
// behind, so a caller may retry with another path.
func InitORT(libPath string) error {
	if libPath == "" {
		return fmt.Errorf("InitORT: empty library path; %s", fetchHint)
	}
	abs, err := filepath.Abs(libPath)
	if err != nil {
		return fmt.Errorf("InitORT: %q: %w", libPath, err)
	}

	ortState.mu.Lock()
	defer ortState.mu.Unlock()

	if ortState.path != "" {
		if sameFile(ortState.path, abs) {
			return nil
		}
		return fmt.Errorf("InitORT: ONNX Runtime already loaded from %s; cannot also load %s in the same process",
			ortState.path, abs)
	}
	if ort.IsInitialized() {
		return errors.New("InitORT: onnxruntime_go was initialised outside package inference; library path unknown")
	}

	// Stat first: dlopen's message for a missing file is easy to misread.
	if _, err := checkLibFile(abs, "InitORT"); err != nil {
		return err
	}
	ort.SetSharedLibraryPath(abs)
	if err := ort.InitializeEnvironment(); err != nil {
		return fmt.Errorf("load ONNX Runtime library %s: not a loadable ONNX Runtime %s shared library (need C API %d): %w; %s",
			abs, ORTVersion, ortAPIVersion, err, fetchHint)
	}
	ortState.path = abs
	return nil
}

// LoadedORTLibrary returns the path InitORT loaded, or "" if none yet.
func LoadedORTLibrary() string {
	ortState.mu.Lock()
	defer ortState.mu.Unlock()
	return ortState.path
}

// ORTRuntimeVersion reports the version string of the loaded library ("" if
// InitORT has not succeeded), for logs and --version output.
func ORTRuntimeVersion() string {
	if LoadedORTLibrary() == "" {
		return ""
	}
	return ort.GetVersion()
}

func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}
