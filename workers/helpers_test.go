package workers_test

import (
	"io"
	"log/slog"
)

func testLogger() *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }
