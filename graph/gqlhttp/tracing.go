package gqlhttp

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/checkout-backend/checkout/internal/platform/telemetry"
)

// Tracing is a gqlgen extension (srv.Use(gqlhttp.Tracing{})) making a span of each
// query and mutation and a child span of each resolver call (fields with a resolver
// function, not plain struct fields). Subscriptions get resolver spans only: their
// events are traced where they are consumed from RabbitMQ.
type Tracing struct{}

var (
	_ graphql.HandlerExtension    = Tracing{}
	_ graphql.ResponseInterceptor = Tracing{}
	_ graphql.FieldInterceptor    = Tracing{}
)

// ExtensionName names the extension for gqlgen.
func (Tracing) ExtensionName() string { return "OpenTelemetry" }

// Validate accepts every schema.
func (Tracing) Validate(graphql.ExecutableSchema) error { return nil }

// InterceptResponse spans one operation.
func (Tracing) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	if !graphql.HasOperationContext(ctx) {
		return next(ctx)
	}
	oc := graphql.GetOperationContext(ctx)
	if oc.Operation == nil || oc.Operation.Operation == ast.Subscription {
		return next(ctx)
	}
	typ := string(oc.Operation.Operation)
	name := oc.OperationName
	if name == "" {
		name = oc.Operation.Name
	}
	spanName := "graphql " + typ
	if name != "" {
		spanName += " " + name
	}
	ctx, span := telemetry.Tracer().Start(ctx, spanName, trace.WithAttributes(
		attribute.String("graphql.operation.type", typ),
		attribute.String("graphql.operation.name", name),
	))
	defer span.End()
	resp := next(ctx)
	if resp != nil && len(resp.Errors) > 0 {
		span.SetStatus(codes.Error, resp.Errors[0].Message)
		span.SetAttributes(attribute.Int("graphql.errors", len(resp.Errors)))
	}
	return resp
}

// InterceptField spans one resolver call.
func (Tracing) InterceptField(ctx context.Context, next graphql.Resolver) (any, error) {
	fc := graphql.GetFieldContext(ctx)
	if fc == nil || !fc.IsResolver {
		return next(ctx)
	}
	ctx, span := telemetry.Tracer().Start(ctx, fc.Object+"."+fc.Field.Name, trace.WithAttributes(
		attribute.String("graphql.field.path", fc.Path().String()),
	))
	res, err := next(ctx)
	telemetry.End(span, err)
	return res, err
}
