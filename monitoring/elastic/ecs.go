package elastic

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"
)

// ECSVersion is the Elastic Common Schema version log records claim.
const ECSVersion = "8.11.0"

// NewECSJSONHandler is slog.JSONHandler writing Elastic Common Schema lines:
// time → "@timestamp" (UTC), level → "log.level" (lowercase), msg →
// "message", source → "log.origin.{file.name,file.line,function}", plus
// "ecs.version" and "service.name" (omitted when service is ""). Attributes
// pass through, dotted keys included, except two top-level renames that keep
// every line indexable into triage-logs-*, where these names are objects:
// "err"/"error" → "error.message", and a scalar "model" → "model.name".
// opts.ReplaceAttr, if any, runs first, on slog's own names.
func NewECSJSONHandler(w io.Writer, opts *slog.HandlerOptions, service string) slog.Handler {
	var o slog.HandlerOptions
	if opts != nil {
		o = *opts
	}
	o.ReplaceAttr = ecsReplace(o.ReplaceAttr)
	attrs := []slog.Attr{slog.String("ecs.version", ECSVersion)}
	if service != "" {
		attrs = append(attrs, slog.String("service.name", service))
	}
	return slog.NewJSONHandler(w, &o).WithAttrs(attrs)
}

func ecsReplace(user func([]string, slog.Attr) slog.Attr) func([]string, slog.Attr) slog.Attr {
	return func(groups []string, a slog.Attr) slog.Attr {
		if user != nil {
			a = user(groups, a)
		}
		if len(groups) > 0 {
			return a
		}
		// slog's own time, level and source are told apart from a caller's
		// attribute of the same name by their types: a caller's "source"
		// (an upload's origin) must not land on the log.origin object.
		switch a.Key {
		case slog.TimeKey:
			if a.Value.Kind() == slog.KindTime {
				// UTC: the daily index is the UTC date, and the shipping
				// writer reads it from this prefix.
				return slog.Time("@timestamp", a.Value.Time().UTC())
			}
		case slog.LevelKey:
			if l, ok := a.Value.Any().(slog.Level); ok {
				return slog.String("log.level", strings.ToLower(l.String()))
			}
		case slog.MessageKey:
			a.Key = "message"
		case slog.SourceKey:
			if src, ok := a.Value.Any().(*slog.Source); ok && src != nil {
				return slog.Group("log.origin",
					slog.Group("file", slog.String("name", src.File), slog.Int("line", src.Line)),
					slog.String("function", src.Function))
			}
		case "err", "error":
			if a.Value.Kind() != slog.KindGroup {
				a.Key = "error.message"
			}
		case "model":
			switch a.Value.Kind() {
			case slog.KindString, slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool:
				a.Key = "model.name"
			}
		}
		return a
	}
}

// NewLogHandler passes every record to next and also ships records at
// minLevel or above to sink as ECS documents (kind "logs"), encoded by the
// same code as NewECSJSONHandler with service.name = the sink's
// Config.Service, so a document has the fields of the stderr line. Groups
// and attributes from WithGroup/WithAttrs apply to both. The sink's own
// records are never shipped. With a nil sink it returns next.
func NewLogHandler(next slog.Handler, sink *Sink, minLevel slog.Level) slog.Handler {
	if sink == nil {
		return next
	}
	return &logHandler{
		next: next,
		ship: NewECSJSONHandler(shipWriter{sink}, &slog.HandlerOptions{Level: minLevel}, sink.cfg.Service),
		min:  minLevel,
	}
}

type logHandler struct {
	next, ship slog.Handler
	min        slog.Level
}

func (h *logHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min || h.next.Enabled(ctx, l)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	var errs []error
	if h.next.Enabled(ctx, r.Level) {
		// A clone: next may keep or change the record's attributes.
		errs = append(errs, h.next.Handle(ctx, r.Clone()))
	}
	if r.Level >= h.min && !isQuiet(ctx) {
		errs = append(errs, h.ship.Handle(ctx, r))
	}
	return errors.Join(errs...)
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{next: h.next.WithAttrs(as), ship: h.ship.WithAttrs(as), min: h.min}
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	return &logHandler{next: h.next.WithGroup(name), ship: h.ship.WithGroup(name), min: h.min}
}

// shipWriter receives one encoded record per Write (slog.JSONHandler
// writes each record whole) and queues it as a log document.
type shipWriter struct{ sink *Sink }

var timestampPrefix = []byte(`{"@timestamp":"`)

func (w shipWriter) Write(p []byte) (int, error) {
	n := len(p)
	body := bytes.Clone(bytes.TrimRight(p, "\n")) // slog reuses p
	t := time.Now()
	// The record's own date picks the daily index: ecsReplace writes
	// @timestamp first, in UTC.
	if rest, ok := bytes.CutPrefix(body, timestampPrefix); ok && len(rest) >= 10 {
		if d, err := time.Parse(time.DateOnly, string(rest[:10])); err == nil {
			t = d
		}
	}
	w.sink.enqueue(logsKind, t, body)
	return n, nil
}
