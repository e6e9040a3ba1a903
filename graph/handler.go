package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/checkout-backend/checkout/graph/generated"
	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/httpx"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
)

// HandlerOptions configure the GraphQL endpoint.
type HandlerOptions struct {
	Logger        *slog.Logger
	Verifier      *auth.Verifier
	Introspection bool
}

// NewServer builds the gqlgen server over the resolver.
func NewServer(r *Resolver, opt HandlerOptions) *handler.Server {
	logger := opt.Logger
	if logger == nil {
		logger = slog.Default()
	}
	srv := handler.New(generated.NewExecutableSchema(generated.Config{Resolvers: r}))
	srv.AddTransport(transport.Websocket{
		KeepAlivePingInterval: 10 * time.Second,
		InitFunc: func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			tok, ok := auth.BearerToken(p.Authorization())
			if !ok {
				return ctx, nil, errors.New("unauthorized: connection_init needs Authorization: Bearer <token>")
			}
			a, err := opt.Verifier.Verify(tok)
			if err != nil {
				return ctx, nil, errors.New("unauthorized: invalid or expired token")
			}
			return auth.WithActor(ctx, a), nil, nil
		},
	})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	if opt.Introspection {
		srv.Use(extension.Introspection{})
	}
	srv.AroundOperations(func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		oc := graphql.GetOperationContext(ctx)
		name := oc.OperationName
		if name == "" && oc.Operation != nil {
			name = oc.Operation.Name
		}
		httpx.SetOperation(ctx, name)
		return next(ctx)
	})
	srv.SetErrorPresenter(func(ctx context.Context, err error) *gqlerror.Error {
		var ge *gqlerror.Error
		if errors.As(err, &ge) && ge.Extensions != nil && ge.Extensions["code"] != nil {
			return ge
		}
		if errors.As(err, &ge) && ge.Err == nil {
			// Parse and validation errors carry no wrapped cause and are safe to show.
			return ge
		}
		id := clog.CorrelationID(ctx)
		logger.ErrorContext(ctx, "graphql resolver error", "error", err, "path", graphql.GetPath(ctx).String())
		return &gqlerror.Error{Message: "internal server error", Path: graphql.GetPath(ctx),
			Extensions: map[string]any{"code": CodeInternal, "correlationId": id}}
	})
	srv.SetRecoverFunc(func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "panic in resolver", "panic", fmt.Sprint(p))
		return fmt.Errorf("panic: %v", p)
	})
	return srv
}

// Handler wraps the server with auth and dataloaders.
func Handler(r *Resolver, opt HandlerOptions) http.Handler {
	return opt.Verifier.Middleware(LoaderMiddleware(r.Catalog, NewServer(r, opt)))
}
