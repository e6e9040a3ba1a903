// Package log sets up JSON logging with log/slog and carries the request's correlation
// id through contexts, so every line of a request can be found by it.
package log

import (
	"context"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"

	"github.com/checkout-backend/checkout/internal/cardnum"
)

type ctxKey struct{}

// WithCorrelationID returns ctx carrying id.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// CorrelationID returns the correlation id of ctx, or "".
func CorrelationID(ctx context.Context) string {
	s, _ := ctx.Value(ctxKey{}).(string)
	return s
}

// New returns a JSON logger writing to w (stdout when nil) at level.
func New(w io.Writer, level slog.Level) *slog.Logger {
	if w == nil {
		w = os.Stdout
	}
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: redact})
	return slog.New(&ctxHandler{Handler: h})
}

// ctxHandler adds the correlation id of the record's context.
type ctxHandler struct{ slog.Handler }

func (h *ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := CorrelationID(ctx); id != "" {
		r.AddAttrs(slog.String("correlationId", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h *ctxHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &ctxHandler{Handler: h.Handler.WithAttrs(as)}
}

func (h *ctxHandler) WithGroup(name string) slog.Handler {
	return &ctxHandler{Handler: h.Handler.WithGroup(name)}
}

var (
	jwtLike = regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`)
	secrets = regexp.MustCompile(`\b(?:tok|pm|sk|rk|whsec|pi_[A-Za-z0-9]+_secret)_[A-Za-z0-9_]+`)
)

// Redact masks card-number-shaped runs, JWTs and provider tokens or secrets in s.
//
// Every log attribute passes through it, so it first looks for what each pattern cannot
// match without (a JWT's "eyJ", a secret's '_'; cardnum counts digits) and runs the
// pattern only when that is there.
func Redact(s string) string {
	s = cardnum.Redact(s, "[REDACTED]")
	if strings.Contains(s, "eyJ") {
		s = jwtLike.ReplaceAllString(s, "[REDACTED-JWT]")
	}
	if strings.IndexByte(s, '_') >= 0 {
		s = secrets.ReplaceAllString(s, "[REDACTED]")
	}
	return s
}

// redact is the last line of defence: no string value leaves unmasked.
func redact(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindString {
		if v := a.Value.String(); v != "" {
			if r := Redact(v); r != v {
				return slog.String(a.Key, r)
			}
		}
	}
	if a.Value.Kind() == slog.KindAny {
		if err, ok := a.Value.Any().(error); ok {
			return slog.String(a.Key, Redact(err.Error()))
		}
	}
	return a
}
