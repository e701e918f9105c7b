package gateway

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/gofiber/fiber/v2"
)

//go:embed ui/index.html
var uiFS embed.FS

// uiPage is the embedded single-page UI and its Content-Security-Policy,
// which allows exactly the page's own inline script and style (by hash) and
// requests to this origin: no external assets.
type uiPage struct {
	html []byte
	csp  string
}

func loadUI() (uiPage, error) {
	html, err := uiFS.ReadFile("ui/index.html")
	if err != nil {
		return uiPage{}, fmt.Errorf("gateway ui: %w", err)
	}
	script, err1 := inlineBlock(string(html), "script")
	style, err2 := inlineBlock(string(html), "style")
	if err := errors.Join(err1, err2); err != nil {
		return uiPage{}, fmt.Errorf("gateway ui: %w", err)
	}
	csp := fmt.Sprintf("default-src 'none'; script-src '%s'; style-src '%s'; connect-src 'self'; img-src 'self' data:; "+
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'", cspHash(script), cspHash(style))
	return uiPage{html: html, csp: csp}, nil
}

// inlineBlock returns the content of the page's one <tag>...</tag> block.
func inlineBlock(html, tag string) (string, error) {
	_, rest, ok := strings.Cut(html, "<"+tag+">")
	if !ok {
		return "", fmt.Errorf("no <%s> block", tag)
	}
	body, _, ok := strings.Cut(rest, "</"+tag+">")
	if !ok {
		return "", fmt.Errorf("unterminated <%s> block", tag)
	}
	return body, nil
}

func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

func (s *Server) handleUI(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentSecurityPolicy, s.ui.csp)
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return c.Send(s.ui.html)
}
