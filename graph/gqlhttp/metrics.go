package gqlhttp

import (
	"bytes"
	"context"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/checkout-backend/checkout/internal/platform/metrics"
)

// Metrics returns a gqlgen extension (srv.Use) that records, through m,
// graphql_request_duration_seconds for every query and mutation, from the start of the
// request (parsing included) to its response. The operation label is the operation's
// name, or its first root field when it has none. Subscriptions are not timed.
func Metrics(m *metrics.Metrics) graphql.HandlerExtension { return metricsExtension{m} }

type metricsExtension struct{ m *metrics.Metrics }

var (
	_ graphql.HandlerExtension    = metricsExtension{}
	_ graphql.ResponseInterceptor = metricsExtension{}
)

func (metricsExtension) ExtensionName() string                   { return "PrometheusMetrics" }
func (metricsExtension) Validate(graphql.ExecutableSchema) error { return nil }

func (e metricsExtension) InterceptResponse(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
	start, name := graphql.GetStartTime(ctx), ""
	if graphql.HasOperationContext(ctx) {
		oc := graphql.GetOperationContext(ctx)
		if oc.Operation != nil && oc.Operation.Operation == ast.Subscription {
			return next(ctx)
		}
		if !oc.Stats.OperationStart.IsZero() {
			start = oc.Stats.OperationStart
		}
		name = OperationName(oc)
	}
	if start.IsZero() {
		start = time.Now()
	}
	resp := next(ctx)
	e.m.ObserveGraphQL(name, Outcome(resp), time.Since(start))
	return resp
}

// OperationName is the name an operation is known by in metrics: its operation name, or
// its first root field when it is anonymous ("" when neither is known).
func OperationName(oc *graphql.OperationContext) string {
	if oc.OperationName != "" {
		return oc.OperationName
	}
	if oc.Operation == nil {
		return ""
	}
	if oc.Operation.Name != "" {
		return oc.Operation.Name
	}
	for _, sel := range oc.Operation.SelectionSet {
		if f, ok := sel.(*ast.Field); ok {
			return f.Name
		}
	}
	return ""
}

// Outcome classifies a response: "error" when it has GraphQL errors, "user_error" when
// a payload carries userErrors, "ok" otherwise.
func Outcome(resp *graphql.Response) string {
	switch {
	case resp == nil || len(resp.Errors) > 0:
		return metrics.OutcomeError
	case bytes.Contains(resp.Data, []byte(`"userErrors":[{`)):
		return metrics.OutcomeUserError
	}
	return metrics.OutcomeOK
}
