package elastic

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2025, 6, 30, 22, 15, 0, 0, time.FixedZone("UTC-3", -3*3600))

// handle sends one record through h with a fixed time.
func handle(t *testing.T, h slog.Handler, level slog.Level, msg string, args ...any) {
	t.Helper()
	r := slog.NewRecord(testTime, level, msg, 0)
	r.Add(args...)
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

func TestECSJSONHandler(t *testing.T) {
	var buf bytes.Buffer
	h := NewECSJSONHandler(&buf, nil, "triage")
	h = h.WithAttrs([]slog.Attr{slog.String("triage.role", "consumer")})
	handle(t, h, slog.LevelWarn, "dead letter", "event.action", "dead-letter", "event.reason", "bad-json",
		"err", errors.New("unexpected EOF"), "model", "support", "model.version", "v3", "count", 3, "source", "upload")
	got := jsonMap(t, buf.Bytes())
	want := map[string]any{
		"@timestamp": "2025-07-01T01:15:00Z", "log.level": "warn", "message": "dead letter",
		"ecs.version": ECSVersion, "service.name": "triage", "triage.role": "consumer",
		"event.action": "dead-letter", "event.reason": "bad-json", "error.message": "unexpected EOF",
		"model.name": "support", "model.version": "v3", "count": 3.0,
		"source": "upload", // a caller's attribute, not slog's source
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("fields %v, want exactly %v", got, want)
	}

	// Groups nest; names inside them are left alone; a structured model stays an object.
	buf.Reset()
	handle(t, h.WithGroup("http").WithAttrs([]slog.Attr{slog.Int("status", 500)}), slog.LevelError, "request failed",
		"err", "boom", slog.Group("model", "name", "x"))
	got = jsonMap(t, buf.Bytes())
	http, _ := got["http"].(map[string]any)
	if got["log.level"] != "error" || http["status"] != 500.0 || http["err"] != "boom" || http["model"] == nil {
		t.Fatalf("grouped record: %s", buf.Bytes())
	}

	// Source becomes log.origin; the caller's ReplaceAttr runs first, on slog's names.
	buf.Reset()
	logger := slog.New(NewECSJSONHandler(&buf, &slog.HandlerOptions{AddSource: true, Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		}}, ""))
	logger.Debug("with source", "model", slog.GroupValue(slog.String("name", "support")))
	got = jsonMap(t, buf.Bytes())
	origin, _ := got["log.origin"].(map[string]any)
	file, _ := origin["file"].(map[string]any)
	if _, ok := got["@timestamp"]; ok || got["log.level"] != "debug" || got["service.name"] != nil ||
		!strings.HasSuffix(file["name"].(string), "ecs_test.go") || file["line"].(float64) < 1 ||
		!strings.Contains(origin["function"].(string), "TestECSJSONHandler") {
		t.Fatalf("record with source, without time: %s", buf.Bytes())
	}
	if m, _ := got["model"].(map[string]any); m["name"] != "support" {
		t.Fatalf("group-valued model: %s", buf.Bytes())
	}
}

func TestLogHandlerShipsWhatStderrShows(t *testing.T) {
	s, err := New(Config{URLs: []string{"http://127.0.0.1:1"}, Service: "triage-test"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	h := NewLogHandler(NewECSJSONHandler(&stderr, nil, "triage-test"), s, slog.LevelWarn)
	h = h.WithAttrs([]slog.Attr{slog.String("triage.role", "consumer")}).WithGroup("req")

	handle(t, h, slog.LevelInfo, "below the shipping level", "id", 1)
	if stderr.Len() == 0 || len(s.buf) != 0 {
		t.Fatalf("info record: stderr %q, %d shipped; want stderr only", stderr.String(), len(s.buf))
	}
	stderr.Reset()
	handle(t, h, slog.LevelError, "dead letter", "reason", "bad-json")
	if len(s.buf) != 1 {
		t.Fatalf("%d documents shipped for one error record", len(s.buf))
	}
	d := <-s.buf
	line := bytes.TrimRight(stderr.Bytes(), "\n")
	if !bytes.Equal(d.body, line) {
		t.Fatalf("shipped document differs from the stderr line:\n doc    %s\n stderr %s", d.body, line)
	}
	if d.index != "triage-logs-2025.07.01" || kinds[d.kind] != KindLogs {
		t.Fatalf("shipped to %s (kind %s), want triage-logs-2025.07.01: the record's UTC date", d.index, kinds[d.kind])
	}
	got := jsonMap(t, d.body)
	if req, _ := got["req"].(map[string]any); req["reason"] != "bad-json" || got["triage.role"] != "consumer" || got["service.name"] != "triage-test" {
		t.Fatalf("shipped document: %s", d.body)
	}

	// next may filter more than the sink: a warning still ships.
	quiet := NewLogHandler(NewECSJSONHandler(&stderr, &slog.HandlerOptions{Level: slog.LevelError}, ""), s, slog.LevelWarn)
	stderr.Reset()
	if !quiet.Enabled(context.Background(), slog.LevelWarn) || quiet.Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("Enabled must be true from the lower of the two levels")
	}
	handle(t, quiet, slog.LevelWarn, "warn")
	if stderr.Len() != 0 || len(s.buf) != 1 {
		t.Fatalf("warning: stderr %q, %d shipped; want shipped only", stderr.String(), len(s.buf))
	}
	<-s.buf

	if NewLogHandler(quiet, nil, slog.LevelInfo) != quiet {
		t.Fatal("NewLogHandler with a nil sink must return next")
	}
}
