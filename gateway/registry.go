package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/triage-ml/triage/registry"
)

// Registry is the model registry as the gateway sees it: reads for GET
// /v1/models, and alias moves (which the implementation also announces to
// every serving process) for the admin routes.
type Registry interface {
	Versions(ctx context.Context, name string) ([]registry.Version, error)
	Aliases(ctx context.Context, name string) (map[string]string, error)
	Promote(ctx context.Context, name, version, who, why string) (registry.Move, error)
	Rollback(ctx context.Context, name, who, why string) (registry.Move, error)
}

// Serve installs m as the version serving name, replacing (and retiring,
// once its in-flight requests end) what served before; release is called
// when this version is retired and unused. The serving set calls it on
// every swap, so the gateway switches between two batches.
func (s *Server) Serve(name string, m Model, release func()) {
	if s.ctx.Err() != nil { // closed: nothing would ever retire the entry
		release()
		return
	}
	e := s.newEntry(name, m, false)
	e.onStop = release
	s.models.put(e)
}

// VersionInfo is one registry version in GET /v1/models.
type VersionInfo struct {
	Version   string             `json:"version"`
	Hash      string             `json:"hash" doc:"content hash of the bundle"`
	CreatedAt string             `json:"created_at"`
	Parent    string             `json:"parent,omitempty"`
	Metrics   map[string]float64 `json:"metrics,omitempty"`
	LoadError string             `json:"load_error,omitempty" doc:"the latest failure of a serving process to load it, if any"`
}

// PromoteRequest is POST /v1/models/{name}/promote; RollbackRequest is the
// body of /rollback.
type PromoteRequest struct {
	Version string `json:"version" doc:"registry version to serve, e.g. v3"`
	Reason  string `json:"reason,omitempty" doc:"why, recorded in the alias history"`
}

// RollbackRequest is POST /v1/models/{name}/rollback.
type RollbackRequest struct {
	Reason string `json:"reason,omitempty" doc:"why, recorded in the alias history"`
}

// AliasMove is the answer to promote and rollback.
type AliasMove struct {
	// Warning is set when the move was recorded but serving processes could
	// not be told at once (Kafka unreachable): they follow within their
	// reconcile interval.
	Warning string `json:"warning,omitempty"`
	Model   string `json:"model"`
	Alias   string `json:"alias"`
	From    string `json:"from,omitempty"`
	To      string `json:"to"`
	Who     string `json:"who,omitempty"`
	Why     string `json:"why,omitempty"`
	At      string `json:"at"`
}

func aliasMove(mv registry.Move) AliasMove {
	return AliasMove{Model: mv.Model, Alias: mv.Alias, From: mv.From, To: mv.To, Who: mv.Who, Why: mv.Why,
		At: mv.At.UTC().Format("2006-01-02T15:04:05.000Z07:00")}
}

// registryInfo adds versions and aliases to a model's description.
func (s *Server) registryInfo(c *fiber.Ctx, info *ModelInfo) {
	if s.cfg.Registry == nil {
		return
	}
	if al, err := s.cfg.Registry.Aliases(c.UserContext(), info.Name); err == nil {
		info.Aliases = al
	}
	vs, err := s.cfg.Registry.Versions(c.UserContext(), info.Name)
	if err != nil {
		return
	}
	for _, v := range vs {
		vi := VersionInfo{Version: v.Version, Hash: v.Hash, CreatedAt: v.CreatedAt.UTC().Format("2006-01-02T15:04:05Z07:00"),
			Parent: v.Lineage.Parent, Metrics: v.Lineage.Metrics}
		for _, r := range v.Loads {
			if !r.OK {
				vi.LoadError = r.Instance + ": " + r.Error
			}
		}
		info.Versions = append(info.Versions, vi)
	}
}

func (s *Server) handlePromote(c *fiber.Ctx) error {
	if s.cfg.Registry == nil {
		return unavailable("this gateway has no model registry")
	}
	body, ae := s.jsonBody(c)
	if ae != nil {
		return ae
	}
	var req PromoteRequest
	if ae := decodeStrict(body, &req); ae != nil {
		return ae
	}
	if req.Version == "" {
		return badRequest("version", "version is required")
	}
	mv, err := s.cfg.Registry.Promote(c.UserContext(), c.Params("name"), req.Version, s.who(c), req.Reason)
	return s.moved(c, mv, err)
}

func (s *Server) handleRollback(c *fiber.Ctx) error {
	if s.cfg.Registry == nil {
		return unavailable("this gateway has no model registry")
	}
	var req RollbackRequest
	if len(c.Body()) > 0 {
		body, ae := s.jsonBody(c)
		if ae != nil {
			return ae
		}
		if ae := decodeStrict(body, &req); ae != nil {
			return ae
		}
	}
	mv, err := s.cfg.Registry.Rollback(c.UserContext(), c.Params("name"), s.who(c), req.Reason)
	return s.moved(c, mv, err)
}

// who is the API key's name, for the alias history.
func (s *Server) who(c *fiber.Ctx) string {
	if n, ok := c.Locals(localKeyName).(string); ok && n != "" {
		return "api-key:" + n
	}
	return "gateway"
}

// registryError maps the registry's refusals to client errors with the
// reason; anything else is internal.
func registryError(err error) error {
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return notFound("%s", err.Error())
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, registry.ErrNoRollback):
		return errorf(http.StatusConflict, codeConflict, "%s", err.Error())
	}
	return err
}

// moved answers an alias move: 200 when it was recorded (with a warning if
// it was not announced), the registry's refusal otherwise.
func (s *Server) moved(c *fiber.Ctx, mv registry.Move, err error) error {
	out := aliasMove(mv)
	if errors.Is(err, registry.ErrNotAnnounced) {
		s.log.Warn("alias move recorded but not announced", "model", mv.Model, "alias", mv.Alias, "to", mv.To, "err", err)
		out.Warning = err.Error()
		err = nil
	}
	if err != nil {
		return registryError(err)
	}
	return c.JSON(out)
}
