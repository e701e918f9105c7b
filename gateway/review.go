package gateway

import (
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/triage-ml/triage/schemas"
)

// ReviewQueue is the queue of uncertain predictions a person can label
// (package review); nil answers 503.
type ReviewQueue interface {
	List(model string, limit int) []schemas.Review
	Done(id string)
}

// ReviewList is GET /v1/review.
type ReviewList struct {
	Items []schemas.Review `json:"items" doc:"uncertain predictions, smallest top-2 margin first; label one with POST /v1/feedback (same id)"`
}

func (s *Server) handleReview(c *fiber.Ctx) error {
	if s.cfg.Review == nil {
		return unavailable("this gateway has no review queue (the consumers' --review-topic)")
	}
	limit := 20
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			return badRequest("limit", "limit %q: want 1..200", v)
		}
		limit = n
	}
	items := s.cfg.Review.List(c.Query("model"), limit)
	if items == nil {
		items = []schemas.Review{}
	}
	return c.JSON(ReviewList{Items: items})
}
