package admin

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
)

// pageFiles holds the console page: one HTML document whose style and
// script are inlined into it when the Handler is built, so the page needs
// nothing but the Handler itself (no CDN, no build step, works offline).
//
//go:embed page/index.html page/console.css page/console.js
var pageFiles embed.FS

// buildPage assembles the page and the Content-Security-Policy that allows
// exactly its inline style and script, and nothing from elsewhere.
func buildPage() ([]byte, string, error) {
	read := func(name string) (string, error) {
		b, err := pageFiles.ReadFile("page/" + name)
		return string(b), err
	}
	html, err := read("index.html")
	if err != nil {
		return nil, "", fmt.Errorf("admin: reading the embedded page: %w", err)
	}
	css, err := read("console.css")
	if err != nil {
		return nil, "", fmt.Errorf("admin: reading the embedded page: %w", err)
	}
	js, err := read("console.js")
	if err != nil {
		return nil, "", fmt.Errorf("admin: reading the embedded page: %w", err)
	}
	if !strings.Contains(html, "<style></style>") || !strings.Contains(html, "<script></script>") {
		return nil, "", fmt.Errorf("admin: the embedded page has no place for its style and script")
	}
	html = strings.Replace(html, "<style></style>", "<style>"+css+"</style>", 1)
	html = strings.Replace(html, "<script></script>", "<script>"+js+"</script>", 1)
	csp := "default-src 'none'; connect-src 'self'; img-src 'self' data:; " +
		"script-src '" + hash(js) + "'; style-src '" + hash(css) + "'; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	return []byte(html), csp, nil
}

// hash returns the CSP source expression for an inline element's text.
func hash(text string) string {
	sum := sha256.Sum256([]byte(text))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// servePage serves the console page. It needs no token: it holds no data,
// and asks for a token before it reads any.
func (h *Handler) servePage(w http.ResponseWriter, r *http.Request) {
	if !h.allowMethod(w, r, http.MethodGet) {
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", h.pageCSP)
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(h.page)
	}
}
