package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gofiber/fiber/v2"
)

// Error codes: the machine-readable half of every error response.
const (
	codeInvalidRequest   = "invalid_request"        // 400: malformed JSON, unknown or mistyped field, missing field
	codeUnauthorized     = "unauthorized"           // 401: no key, or a key the gateway does not know
	codeForbidden        = "forbidden"              // 403: the key lacks the route's scope
	codeNotFound         = "not_found"              // 404: unknown route, model or job
	codeMethod           = "method_not_allowed"     // 405
	codeTooLarge         = "payload_too_large"      // 413: body or upload over the limit
	codeUnsupportedMedia = "unsupported_media_type" // 415: compressed body
	codeUnprocessable    = "unprocessable"          // 422: well-formed but invalid (empty or too long text, unknown label)
	codeConflict         = "conflict"               // 409: the registry refused an alias move (version does not load, nothing to roll back to)
	codeRateLimited      = "rate_limited"           // 429: the key's token bucket is empty
	codeUnavailable      = "unavailable"            // 503: feedback not wired, queue full, not ready, timeout
	codeInternal         = "internal"               // 500: details only in the log
	internalMessageText  = "internal error"
)

// apiError is every error the API returns, as
// {"error":{"code","message","field"?,"reasons"?}}.
type apiError struct {
	Status     int      `json:"-"`
	Code       string   `json:"code"`
	Message    string   `json:"message"`
	Field      string   `json:"field,omitempty"`   // the request field at fault, for 400/422
	Reasons    []string `json:"reasons,omitempty"` // why /readyz is not ready
	retryAfter int      // seconds, sent as Retry-After
	authScheme bool     // send WWW-Authenticate
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// ErrorBody is the JSON envelope of every error response.
type ErrorBody struct {
	Error *apiError `json:"error"`
}

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func badRequest(field, format string, args ...any) *apiError {
	e := errorf(http.StatusBadRequest, codeInvalidRequest, format, args...)
	e.Field = field
	return e
}

func unprocessable(field, format string, args ...any) *apiError {
	e := errorf(http.StatusUnprocessableEntity, codeUnprocessable, format, args...)
	e.Field = field
	return e
}

func tooLarge(format string, args ...any) *apiError {
	return errorf(http.StatusRequestEntityTooLarge, codeTooLarge, format, args...)
}

func notFound(format string, args ...any) *apiError {
	return errorf(http.StatusNotFound, codeNotFound, format, args...)
}

func unavailable(format string, args ...any) *apiError {
	return errorf(http.StatusServiceUnavailable, codeUnavailable, format, args...)
}

func unauthorized(msg string) *apiError {
	return &apiError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Message: msg, authScheme: true}
}

var errInternal = &apiError{Status: http.StatusInternalServerError, Code: codeInternal, Message: internalMessageText}

// codeForStatus names the errors fiber and fasthttp raise themselves
// (routing, oversized bodies, malformed HTTP).
func codeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return codeInvalidRequest
	case http.StatusUnauthorized:
		return codeUnauthorized
	case http.StatusForbidden:
		return codeForbidden
	case http.StatusNotFound:
		return codeNotFound
	case http.StatusMethodNotAllowed:
		return codeMethod
	case http.StatusRequestEntityTooLarge:
		return codeTooLarge
	case http.StatusUnsupportedMediaType:
		return codeUnsupportedMedia
	case http.StatusUnprocessableEntity:
		return codeUnprocessable
	case http.StatusTooManyRequests:
		return codeRateLimited
	case http.StatusServiceUnavailable:
		return codeUnavailable
	}
	if status >= 500 {
		return codeInternal
	}
	return codeInvalidRequest
}

// toAPIError maps any handler error to the public shape. Errors that are
// not already *apiError or *fiber.Error are internal: the caller logs them
// and the client only sees "internal error".
func toAPIError(err error) (ae *apiError, internal bool) {
	if errors.As(err, &ae) {
		return ae, false
	}
	var fe *fiber.Error
	if errors.As(err, &fe) {
		if fe.Code >= 500 {
			return errInternal, true
		}
		msg := fe.Message
		switch fe.Code {
		case http.StatusNotFound:
			msg = "no such route"
		case http.StatusMethodNotAllowed:
			msg = "method not allowed on this route"
		case http.StatusRequestEntityTooLarge:
			msg = "request body too large"
		case http.StatusBadRequest:
			msg = "malformed HTTP request"
		}
		return &apiError{Status: fe.Code, Code: codeForStatus(fe.Code), Message: msg}, false
	}
	return errInternal, true
}

// writeError sends ae with its headers.
func writeError(c *fiber.Ctx, ae *apiError) error {
	if ae.authScheme {
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="triage", charset="UTF-8"`)
	}
	if ae.retryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(ae.retryAfter))
	}
	return c.Status(ae.Status).JSON(ErrorBody{Error: ae})
}
