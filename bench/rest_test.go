package bench

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestRestSendsWhatItIsAskedTo: predict bodies cycle through the data's
// texts as POSTs; --get sends body-less GETs; every request is counted.
func TestRestSendsWhatItIsAskedTo(t *testing.T) {
	var mu sync.Mutex
	methods := map[string]int{}
	texts := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		methods[r.Method]++
		if r.Method == http.MethodPost {
			var body struct{ Text string }
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil || r.Header.Get("Content-Type") != "application/json" {
				http.Error(w, "bad body", http.StatusBadRequest)
				return
			}
			texts[body.Text]++
		}
	}))
	defer srv.Close()
	data := filepath.Join(t.TempDir(), "texts.csv")
	if err := os.WriteFile(data, []byte("text,label\nfirst,a\nsecond,b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := RestConfig{URL: srv.URL, Data: data, TextColumn: "text", Rates: []int{200}, Duration: 500 * time.Millisecond}

	rows, err := Rest(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Success != 1 || rows[0].Requests < 50 {
		t.Fatalf("POST rows = %+v, want one fully successful rate of ~100 requests", rows)
	}
	if texts["first"] == 0 || texts["second"] == 0 || methods[http.MethodGet] != 0 {
		t.Fatalf("POST run: methods %v, texts %v; want both texts, no GETs", methods, texts)
	}

	cfg.Get, cfg.Data = true, ""
	if rows, err = Rest(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if rows[0].Success != 1 || uint64(methods[http.MethodGet]) != rows[0].Requests {
		t.Fatalf("GET run: row %+v, server saw %v", rows[0], methods)
	}
}
