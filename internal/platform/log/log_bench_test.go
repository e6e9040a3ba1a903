package log

import (
	"context"
	"io"
	"log/slog"
	"testing"
)

// BenchmarkLogLine is what a paid order's usual lines cost the service: the request line
// and the payment worker's, each attribute through the redactor (go test
// ./internal/platform/log -run XXX -bench LogLine -benchmem).
func BenchmarkLogLine(b *testing.B) {
	logger := New(io.Discard, slog.LevelInfo)
	ctx := WithCorrelationID(context.Background(), "01a24e84-5262-7791-bf8a-42f9fc684fa9")
	b.ReportAllocs()
	for b.Loop() {
		logger.InfoContext(ctx, "request", "method", "POST", "path", "/graphql", "status", 200, "latencyMs", 7, "operation", "Checkout")
		logger.InfoContext(ctx, "payment applied", "orderId", "01a24e84-5262-7791-bf8a-42f9fc684fa9", "payment", "succeeded", "status", "PAID")
	}
}
