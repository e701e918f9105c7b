package elastic

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeES answers the two requests the sink makes — PUT _index_template/NAME
// and POST _bulk — and records them. Hooks decide the answers.
type fakeES struct {
	*httptest.Server

	mu        sync.Mutex
	templates map[string][]byte // name → last body
	bulks     int               // bulk requests answered, any status
	docs      map[string]fakeDoc
	attempts  map[string]int // per document id

	// templateStatus, when set, answers template PUTs (0 = 200).
	templateStatus func(n int) int
	// bulkStatus, when set, answers the nth bulk request (0 = per item).
	bulkStatus func(n int) int
	// itemStatus, when set, answers one item (0 = 201).
	itemStatus func(id string, attempt int, body []byte) int
	// delay, when set, holds each bulk answer.
	delay time.Duration
}

type fakeDoc struct {
	Index string
	Body  []byte
}

func newFakeES(t *testing.T) *fakeES {
	t.Helper()
	f := &fakeES{templates: map[string][]byte{}, docs: map[string]fakeDoc{}, attempts: map[string]int{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeES) serve(w http.ResponseWriter, r *http.Request) {
	// go-elasticsearch refuses answers without it (its product check).
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	w.Header().Set("Content-Type", "application/json")
	body, _ := io.ReadAll(r.Body)
	switch {
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/_index_template/"):
		f.mu.Lock()
		name := strings.TrimPrefix(r.URL.Path, "/_index_template/")
		n := len(f.templates)
		status := 200
		if f.templateStatus != nil {
			status = f.templateStatus(n)
		}
		if status < 300 {
			f.templates[name] = body
		}
		f.mu.Unlock()
		w.WriteHeader(status)
		fmt.Fprint(w, `{"acknowledged":true}`)
	case r.Method == http.MethodPost && r.URL.Path == "/_bulk":
		f.bulk(w, r, body)
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"error":"fake: no %s %s"}`, r.Method, r.URL.Path)
	}
}

func (f *fakeES) bulk(w http.ResponseWriter, r *http.Request, body []byte) {
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-r.Context().Done(): // the client gave up
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.bulks
	f.bulks++
	if f.bulkStatus != nil {
		if st := f.bulkStatus(n); st != 0 {
			w.WriteHeader(st)
			fmt.Fprintf(w, `{"error":{"type":"fake","reason":"status %d"},"status":%d}`, st, st)
			return
		}
	}
	type result struct {
		Index  string         `json:"_index"`
		ID     string         `json:"_id"`
		Status int            `json:"status"`
		Error  map[string]any `json:"error,omitempty"`
	}
	var items []map[string]result
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var meta map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &meta); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if !sc.Scan() {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		m := meta["index"]
		doc := bytes.Clone(sc.Bytes())
		f.attempts[m.ID]++
		st := 201
		if f.itemStatus != nil {
			if s := f.itemStatus(m.ID, f.attempts[m.ID], doc); s != 0 {
				st = s
			}
		}
		res := result{Index: m.Index, ID: m.ID, Status: st}
		if st > 201 {
			res.Error = map[string]any{"type": "fake_exception", "reason": fmt.Sprintf("status %d", st)}
		} else {
			f.docs[m.ID] = fakeDoc{Index: m.Index, Body: doc}
		}
		items = append(items, map[string]result{"index": res})
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"took": 1, "errors": false, "items": items})
}

func (f *fakeES) snapshot() (docs map[string]fakeDoc, templates []string, bulks int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	docs = make(map[string]fakeDoc, len(f.docs))
	for k, v := range f.docs {
		docs[k] = v
	}
	for k := range f.templates {
		templates = append(templates, k)
	}
	return docs, templates, f.bulks
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
