package graph

import (
	"context"
	"encoding/base64"
	"strings"
	"time"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/checkout"
)

func pageSize(ctx context.Context, first *int) (int, error) {
	n := 20
	if first != nil {
		n = *first
	}
	if n < 1 || n > checkout.MaxPageSize {
		return 0, gqlError(ctx, gqlhttp.CodeBadUserInput, "first must be between 1 and 100")
	}
	return n, nil
}

func encodeCursor(parts ...string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strings.Join(parts, "|")))
}

func decodeCursor(ctx context.Context, c string, n int) ([]string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	parts := strings.Split(string(b), "|")
	if err != nil || len(parts) != n {
		return nil, gqlError(ctx, gqlhttp.CodeBadUserInput, "after is not a cursor of this connection")
	}
	return parts, nil
}

func orderCursor(o *checkout.Order) string {
	return encodeCursor("o", o.CreatedAt.UTC().Format(time.RFC3339Nano), o.ID)
}

func decodeOrderCursor(ctx context.Context, after *string) (*checkout.PageCursor, error) {
	if after == nil {
		return nil, nil
	}
	p, err := decodeCursor(ctx, *after, 3)
	if err != nil {
		return nil, err
	}
	t, terr := time.Parse(time.RFC3339Nano, p[1])
	_, idOK := checkout.CanonicalID(p[2])
	if p[0] != "o" || terr != nil || !idOK {
		return nil, gqlError(ctx, gqlhttp.CodeBadUserInput, "after is not a cursor of this connection")
	}
	return &checkout.PageCursor{CreatedAt: t, ID: p[2]}, nil
}
