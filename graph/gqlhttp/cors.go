package gqlhttp

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// CORS lets browser storefronts on other origins call the API. Tokens travel in the
// Authorization header, never in cookies, so credentials are not allowed.
type CORS struct {
	// AllowedOrigins are origins ("https://shop.example.com"), "https://*.example.com"
	// for any subdomain, or "*" for any origin. Empty: no CORS headers at all.
	AllowedOrigins []string
	// MaxAge is how long a browser may cache a preflight answer; 0 is 10 minutes.
	MaxAge time.Duration
}

// corsAllowedHeaders are the request headers a cross-origin request may send.
var corsAllowedHeaders = strings.Join([]string{
	"Accept", "Authorization", "Content-Type", "X-Request-ID",
	"Apollographql-Client-Name", "Apollographql-Client-Version", "Apollo-Require-Preflight",
	"X-Apollo-Operation-Name", "Traceparent", "Tracestate", "Baggage",
}, ", ")

// ValidateOrigins checks the form of allowed origins (a typo would silently lock a
// storefront out).
func ValidateOrigins(origins []string) error {
	for _, o := range origins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("CORS_ALLOWED_ORIGINS: %q is not an origin like https://shop.example.com (or https://*.example.com, or *)", o)
		}
	}
	return nil
}

func (c CORS) allowed(origin string) bool {
	origin = strings.ToLower(origin)
	for _, o := range c.AllowedOrigins {
		o = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(o), "/"))
		switch {
		case o == "*" || o == origin:
			return true
		case strings.Contains(o, "://*."):
			scheme, suffix, _ := strings.Cut(o, "://*")
			if strings.HasPrefix(origin, scheme+"://") && strings.HasSuffix(origin, suffix) &&
				len(origin) > len(scheme)+3+len(suffix) {
				return true
			}
		}
	}
	return false
}

// Handler answers preflights and adds CORS headers to the answers of next.
func (c CORS) Handler(next http.Handler) http.Handler {
	if len(c.AllowedOrigins) == 0 {
		return next
	}
	maxAge := c.MaxAge
	if maxAge <= 0 {
		maxAge = 10 * time.Minute
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
		}
		if !c.allowed(origin) {
			if preflight {
				w.WriteHeader(http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r) // the browser withholds the answer
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		if preflight {
			h.Set("Access-Control-Allow-Methods", allowedMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowedHeaders)
			h.Set("Access-Control-Max-Age", strconv.Itoa(int(maxAge.Seconds())))
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", "X-Request-ID")
		next.ServeHTTP(w, r)
	})
}

// Private marks every answer as varying on Authorization, and an answer to a request
// with credentials (a bearer token or a client certificate) Cache-Control: private,
// no-store: a shared cache keying GET /graphql by its URL must never hand one customer's
// orders to another. Anonymous answers keep their caching (the catalog is public).
func Private(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Authorization")
		if r.Header.Get("Authorization") != "" || (r.TLS != nil && len(r.TLS.PeerCertificates) > 0) {
			h.Set("Cache-Control", "private, no-store")
		}
		next.ServeHTTP(w, r)
	})
}
