package gateway

import (
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"golang.org/x/time/rate"
)

// principal is an authenticated caller.
type principal struct {
	key     *APIKey
	limiter *rate.Limiter
}

// keyring holds the loaded keys and one token bucket per key.
type keyring struct {
	keys      []*principal
	anonymous *principal // DisableAuth: every request is this caller
}

func newKeyring(keys []APIKey, disable bool, defRate float64, defBurst int) *keyring {
	kr := &keyring{}
	limiter := func(k *APIKey) *rate.Limiter {
		r, b := k.Rate, k.Burst
		if r == 0 {
			r = defRate
		}
		if b == 0 {
			b = defBurst
		}
		return rate.NewLimiter(rate.Limit(r), b)
	}
	for i := range keys {
		k := keys[i]
		kr.keys = append(kr.keys, &principal{key: &k, limiter: limiter(&k)})
	}
	if disable {
		anon := &APIKey{Name: "anonymous", Scopes: []string{ScopeAdmin}}
		kr.anonymous = &principal{key: anon, limiter: limiter(anon)}
	}
	return kr
}

// lookup finds the key whose salted hash matches secret. Every entry is
// hashed and compared in constant time, so timing does not reveal which
// entry (if any) came close.
func (kr *keyring) lookup(secret string) *principal {
	var found *principal
	for _, p := range kr.keys {
		if p.key.matches(secret) && found == nil {
			found = p
		}
	}
	return found
}

// presentedSecret returns the key from "Authorization: Bearer" or X-API-Key.
func presentedSecret(c *fiber.Ctx) (string, *apiError) {
	if h := strings.TrimSpace(c.Get(fiber.HeaderAuthorization)); h != "" {
		scheme, token, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return "", unauthorized("Authorization header must be `Bearer <api key>`")
		}
		return strings.TrimSpace(token), nil
	}
	if k := strings.TrimSpace(c.Get("X-API-Key")); k != "" {
		return k, nil
	}
	return "", unauthorized("API key required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
}

// authorize authenticates the caller, checks scope and charges one token
// from the caller's bucket.
func (s *Server) authorize(scope string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		p := s.keys.anonymous
		if p == nil {
			secret, ae := presentedSecret(c)
			if ae != nil {
				return ae
			}
			if p = s.keys.lookup(secret); p == nil {
				return unauthorized("unknown API key")
			}
		}
		if !p.key.has(scope) {
			return errorf(http.StatusForbidden, codeForbidden, "API key %q lacks the %q scope this route needs", p.key.Name, scope)
		}
		if wait := reserve(p.limiter, time.Now()); wait > 0 {
			s.metrics.rateLimited.WithLabelValues(p.key.Name).Inc()
			ae := errorf(http.StatusTooManyRequests, codeRateLimited, "rate limit for key %q exceeded (%g requests/s, burst %d); retry in %d s",
				p.key.Name, float64(p.limiter.Limit()), p.limiter.Burst(), wait)
			ae.retryAfter = wait
			return ae
		}
		c.Locals(localKeyName, p.key.Name)
		return c.Next()
	}
}

const localKeyName = "triage.key"

// reserve takes one token, or returns how many whole seconds (rounded up,
// at least 1) the caller should wait for one.
func reserve(l *rate.Limiter, now time.Time) int {
	r := l.ReserveN(now, 1)
	if !r.OK() { // burst 0: never allowed
		return 60
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return 0
	}
	r.CancelAt(now)
	return max(1, int(math.Ceil(d.Seconds())))
}
