package graph

import (
	"context"
	"errors"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/graph/model"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/platform/auth"
)

// userErrors splits a domain error into userErrors; any other error is returned for
// the GraphQL error path (access errors keep their code, the rest become internal).
func userErrors(err error) ([]*model.UserError, error) {
	if err == nil {
		return []*model.UserError{}, nil
	}
	if e, ok := checkout.AsError(err); ok {
		return []*model.UserError{{Code: model.UserErrorCode(e.Code), Field: e.Field, Message: e.Message}}, nil
	}
	return nil, err
}

// gqlError builds a GraphQL error with an extensions.code.
func gqlError(ctx context.Context, code, msg string) error {
	return &gqlerror.Error{Message: msg, Path: graphql.GetPath(ctx), Extensions: map[string]any{"code": code}}
}

// accessError turns ErrUnauthenticated/ErrForbidden into their GraphQL errors.
func accessError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, checkout.ErrUnauthenticated):
		return gqlError(ctx, gqlhttp.CodeUnauthenticated, "authentication required: send Authorization: Bearer <token>")
	case errors.Is(err, checkout.ErrForbidden):
		return gqlError(ctx, gqlhttp.CodeForbidden, "not allowed")
	}
	return err
}

// actor returns the caller; a bad token is UNAUTHENTICATED wherever a caller is needed.
func actor(ctx context.Context) (checkout.Actor, error) {
	a, err := auth.FromContext(ctx)
	if err != nil {
		return checkout.Actor{}, gqlError(ctx, gqlhttp.CodeUnauthenticated, "invalid or expired token")
	}
	return a, nil
}
