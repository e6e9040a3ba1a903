package graph

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/checkout-backend/checkout/graph/generated"
	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/httpx"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
	"github.com/checkout-backend/checkout/internal/platform/metrics"
)

// HandlerOptions configure the GraphQL endpoint.
type HandlerOptions struct {
	Logger        *slog.Logger
	Verifier      *auth.Verifier
	Introspection bool
	// HTTP configures GraphQL over HTTP: limits, persisted queries, CORS (zero: defaults).
	HTTP gqlhttp.Options
	// Metrics, when set, records graphql_request_duration_seconds.
	Metrics *metrics.Metrics
	// Overload, when set, sheds load after authentication (clients are known by their
	// JWT subject) and before anything else.
	Overload func(http.Handler) http.Handler
	// Sockets configure the WebSocket connections of subscriptions (zero: defaults, no
	// caps).
	Sockets gqlhttp.SocketOptions
}

// NewServer builds the gqlgen server over the resolver. It panics on options that
// cannot work (PERSISTED_QUERIES=require without a manifest); gqlhttp.FromConfig
// reports those as errors first. Its sockets are counted by sockets.Middleware.
func NewServer(r *Resolver, opt HandlerOptions, sockets *gqlhttp.Sockets) *handler.Server {
	logger := opt.Logger
	if logger == nil {
		logger = slog.Default()
	}
	limits := opt.HTTP.Limits.WithDefaults()
	persisted, err := gqlhttp.NewPersisted(opt.HTTP.Persisted)
	if err != nil {
		panic("graph: " + err.Error())
	}
	srv := handler.New(generated.NewExecutableSchema(generated.Config{Resolvers: r, Complexity: Complexity()}))
	srv.Use(gqlhttp.Tracing{})
	if opt.Metrics != nil {
		srv.Use(gqlhttp.Metrics(opt.Metrics, opt.HTTP.Persisted.Manifest))
	}
	validation := opt.HTTP.Validation
	if validation == nil {
		validation = gqlhttp.NewValidation(gqlhttp.ValidationOptions{})
	}
	srv.SetValidationRulesFn(validation.Rules)
	srv.AddTransport(validation.Transport(sockets.Transport(func(ctx context.Context, p transport.InitPayload) (context.Context, gqlhttp.SocketIdentity, error) {
		// graphql-transport-ws close codes: 4401 Unauthorized without a token,
		// 4403 Forbidden with one that cannot be trusted.
		tok, ok := auth.BearerToken(p.Authorization())
		if a, until, cert := auth.CertificateActor(ctx); !ok && p.Authorization() == "" && cert {
			// A partner authenticated by its TLS client certificate needs no token: the
			// socket is that partner's until the certificate expires.
			// It is checked again against the client CA while the socket lives.
			revoked, stop := auth.WatchCertificate(ctx)
			context.AfterFunc(ctx, stop)
			return auth.WithActor(ctx, a), gqlhttp.SocketIdentity{Key: "sub:" + a.CustomerID, ValidUntil: until, Revoked: revoked}, nil
		}
		if !ok {
			ctx = transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, gqlhttp.CloseUnauthorized), "Unauthorized")
			return ctx, gqlhttp.SocketIdentity{}, errors.New("unauthorized: connection_init needs Authorization: Bearer <token>")
		}
		a, until, err := opt.Verifier.VerifyUntil(tok)
		if err != nil {
			ctx = transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, gqlhttp.CloseForbidden), "Forbidden")
			return ctx, gqlhttp.SocketIdentity{}, errors.New("forbidden: invalid or expired token")
		}
		return auth.WithVerifiedToken(ctx, a, tok), gqlhttp.SocketIdentity{Key: "sub:" + a.CustomerID, ValidUntil: until}, nil
	})))
	srv.Use(sockets.Extension())
	srv.AddTransport(validation.Transport(gqlhttp.Transport{MaxBodyBytes: limits.MaxBodyBytes}))
	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	srv.SetParserTokenLimit(limits.MaxTokens)
	if opt.Introspection {
		srv.Use(extension.Introspection{})
	} else {
		srv.SetDisableSuggestion(true)
	}
	// In this order: a persisted query's hash becomes its document; the guard refuses a
	// document over a limit before gqlgen validates it; the complexity limit needs the
	// validated document; the operation's cost is charged to its client once it is known;
	// an automatic persisted query is stored only once it passed all.
	for _, e := range persisted.Lookup {
		srv.Use(e)
	}
	srv.Use(gqlhttp.NewGuard(limits, opt.Introspection))
	srv.Use(gqlhttp.NewComplexityLimit(limits.MaxComplexity))
	srv.Use(gqlhttp.OperationCost{})
	srv.Use(persisted.Register)
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
		if errors.As(err, &ge) && ge.Err == nil && !opt.Introspection {
			// Validation errors name the schema's fields, arguments and types in their
			// hints: not when introspection is off.
			ge = gqlhttp.WithoutSuggestions(ge)
		}
		if errors.As(err, &ge) && ge.Extensions != nil && ge.Extensions["code"] != nil {
			if ge.Extensions["code"] == gqlhttp.CodeInternal && ge.Extensions["correlationId"] == nil {
				logger.ErrorContext(ctx, "graphql internal error", "error", ge.Message, "path", graphql.GetPath(ctx).String())
				ge.Extensions["correlationId"] = clog.CorrelationID(ctx)
			}
			return ge
		}
		if errors.As(err, &ge) && ge.Err == nil {
			// Parse and validation errors carry no wrapped cause and are safe to show.
			return ge
		}
		id := clog.CorrelationID(ctx)
		logger.ErrorContext(ctx, "graphql resolver error", "error", err, "path", graphql.GetPath(ctx).String())
		if checkout.IsUnavailable(err) {
			// A dependency is gone for a moment: nothing was half-written, and a
			// checkout may be retried with the same idempotency key.
			return &gqlerror.Error{Message: "service temporarily unavailable; retry shortly", Path: graphql.GetPath(ctx),
				Extensions: map[string]any{"code": gqlhttp.CodeUnavailable, "correlationId": id, "retryable": true}}
		}
		return &gqlerror.Error{Message: "internal server error", Path: graphql.GetPath(ctx),
			Extensions: map[string]any{"code": gqlhttp.CodeInternal, "correlationId": id}}
	})
	srv.SetRecoverFunc(func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "panic in resolver", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return fmt.Errorf("panic: %v", p)
	})
	return srv
}

// Handler wraps the server with the caching headers of credentials (gqlhttp.Private),
// CORS (so a preflight needs nothing else), auth, load shedding, the count of sockets and dataloaders.
func Handler(r *Resolver, opt HandlerOptions) http.Handler {
	sockets := gqlhttp.NewSockets(opt.Sockets, r.Now)
	h := sockets.Middleware(LoaderMiddleware(r.Catalog, NewServer(r, opt, sockets)))
	if opt.Overload != nil {
		h = opt.Overload(h)
	}
	if r.Remote != nil { // several regions: note requests another region forwarded
		h = markForwarded(h)
	}
	return gqlhttp.Private(opt.HTTP.CORS.Handler(opt.Verifier.Middleware(h)))
}
