package gateway

import (
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/triage-ml/triage/monitor"
)

// DriftSource is the drift monitor's state (*monitor.Monitor in the same
// process); nil answers 503.
type DriftSource interface {
	Report(model string, limit int) monitor.Report
}

// DriftReport is GET /v1/drift.
type DriftReport = monitor.Report

func (s *Server) handleDrift(c *fiber.Ctx) error {
	if s.cfg.Drift == nil {
		return unavailable("this gateway runs without a drift monitor (run the monitor role in the same process: triage run --target gateway,monitor)")
	}
	limit := 100
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return badRequest("limit", "limit %q: want 1..1000 windows per stream", v)
		}
		limit = n
	}
	return c.JSON(s.cfg.Drift.Report(c.Query("model"), limit))
}
