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
// name when its document is a trusted document of manifest (nil: none), else its first
// root field (see OperationName). Subscriptions are not timed.
func Metrics(m *metrics.Metrics, manifest *Manifest) graphql.HandlerExtension {
	return metricsExtension{m, manifest}
}

type metricsExtension struct {
	m        *metrics.Metrics
	manifest *Manifest
}

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
		name = OperationName(oc, e.manifest)
	}
	if start.IsZero() {
		start = time.Now()
	}
	resp := next(ctx)
	e.m.ObserveGraphQL(name, Outcome(resp), time.Since(start))
	return resp
}

// OperationName is the name an operation is known by in metrics: its name when its
// document is one of manifest's trusted documents, else the first root field of the
// validated operation, a field of the schema ("" when there is no validated operation).
// A name a client chose never becomes a label: names are unbounded, and first come
// first served, they would fill the label's slots before the service's own operations.
func OperationName(oc *graphql.OperationContext, manifest *Manifest) string {
	if oc.Operation == nil {
		return ""
	}
	if oc.Operation.Name != "" && manifest.HasDocument(oc.RawQuery) {
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
