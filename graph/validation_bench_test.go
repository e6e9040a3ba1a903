package graph_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/testutil"
)

// overlappingDocument is the second review's amplifier: ten never-used fragments on
// Query, each selecting product 100 times under one response name with different
// arguments. Every limit on a document's shape lets it through (no alias, one root field,
// 10 fragments, 100 repeats, about 9,000 tokens), yet each pair of those fields is a
// conflict for validation's OverlappingFieldsCanBeMerged.
func overlappingDocument() string {
	var b strings.Builder
	b.WriteString("query Q { __typename }\n")
	for f := range 10 {
		fmt.Fprintf(&b, "fragment F%d on Query {", f)
		for i := range 100 {
			fmt.Fprintf(&b, " product(sku: \"s%d\") { sku }", i)
		}
		b.WriteString(" }\n")
	}
	return b.String()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// unknownFields is a document under every limit with one validation error per field.
func unknownFields(n int) string {
	var b strings.Builder
	b.WriteString(`query Unknown { product(sku: "TEE") {`)
	for i := range n {
		fmt.Fprintf(&b, " nope%d", i)
	}
	b.WriteString(" } }")
	return b.String()
}

// BenchmarkValidationAmplifier measures one anonymous POST of overlappingDocument, and of
// a document of 1,000 unknown fields: the errors and bytes answered, the process CPU and
// the memory allocated per request.
// go test -run '^$' -bench ValidationAmplifier -benchmem ./graph/
func BenchmarkValidationAmplifier(b *testing.B) {
	b.Run("overlapping", func(b *testing.B) { benchDocument(b, overlappingDocument()) })
	b.Run("unknown-fields", func(b *testing.B) { benchDocument(b, unknownFields(1000)) })
}

func benchDocument(b *testing.B, doc string) {
	api := testutil.NewAPI(b, testutil.NewDB(b))
	body, _ := json.Marshal(map[string]any{"query": doc})
	var errs, size int
	cpu := cpuTime()
	b.ResetTimer()
	for range b.N {
		req := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		api.Handler.ServeHTTP(rec, req)
		var r struct{ Errors []json.RawMessage }
		json.Unmarshal(rec.Body.Bytes(), &r)
		errs, size = len(r.Errors), rec.Body.Len()
	}
	b.StopTimer()
	b.ReportMetric(float64(errs), "errors/op")
	b.ReportMetric(float64(size), "respbytes/op")
	b.ReportMetric((cpuTime()-cpu).Seconds()/float64(b.N), "cpu-s/op")
}
