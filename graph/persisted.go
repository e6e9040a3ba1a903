package graph

import (
	"context"

	"github.com/99designs/gqlgen/complexity"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/checkout-backend/checkout/graph/generated"
	"github.com/checkout-backend/checkout/graph/gqlhttp"
)

// OperationReport describes one operation of a checked document.
type OperationReport struct {
	Name       string
	Type       string // query, mutation or subscription
	Shape      gqlhttp.Shape
	Complexity int // with the variables' defaults (a connection's first: 20)
}

// CheckDocument checks a document as the server would before running it: it parses and
// validates against the schema, and holds every operation in it to limits (the
// complexity of an operation with variables is computed with their defaults). It is
// what `checkout persisted verify` runs on each operation of a manifest.
func CheckDocument(doc string, limits gqlhttp.Limits, introspection bool) ([]OperationReport, gqlerror.List) {
	limits = limits.WithDefaults()
	es := generated.NewExecutableSchema(generated.Config{Complexity: Complexity()})
	qd, errs := gqlparser.LoadQueryWithRules(es.Schema(), doc, nil) // nil: the default rules
	if len(errs) > 0 {
		return nil, errs
	}
	var reports []OperationReport
	for _, op := range qd.Operations {
		r := OperationReport{Name: op.Name, Type: string(op.Operation), Shape: gqlhttp.Measure(qd, op)}
		r.Complexity = complexity.Calculate(context.Background(), es, op, nil)
		reports = append(reports, r)
		if e := limits.Check(r.Shape, introspection); e != nil {
			errs = append(errs, e)
		} else if r.Complexity > limits.MaxComplexity {
			errs = append(errs, gqlerror.Errorf("operation %s has complexity %d, which exceeds the limit of %d", op.Name, r.Complexity, limits.MaxComplexity))
		}
	}
	return reports, errs
}
