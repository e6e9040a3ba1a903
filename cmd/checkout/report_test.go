package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/analytics"
	"github.com/checkout-backend/checkout/internal/analytics/parquetsink"
)

// TestReportCommand: the report subcommand reads --dir, honours --since, writes --html,
// and answers bad input with a clear error instead of a report of nothing.
func TestReportCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sink, err := parquetsink.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 27, 14, 0, 0, 0, time.UTC)
	b := analytics.Batch{Orders: []analytics.Order{
		{EventID: "e1", OrderID: "o1", PlacedAt: now.Add(-3 * time.Hour), TotalCents: 1000, Currency: "USD"},
		{EventID: "e2", OrderID: "o2", PlacedAt: now.Add(-30 * time.Minute), TotalCents: 2500, Currency: "USD"},
	}}
	if err := sink.Write(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return now }
	t.Run("Text_SinceOneHour", func(t *testing.T) {
		var out bytes.Buffer
		if err := runReport([]string{"--dir", dir, "--since", "1h"}, &out, clock); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "Orders per minute (1 orders") || !strings.Contains(out.String(), "25.00 USD") {
			t.Fatalf("report:\n%s", out.String())
		}
	})
	t.Run("HTML", func(t *testing.T) {
		page := filepath.Join(t.TempDir(), "r.html")
		var out bytes.Buffer
		if err := runReport([]string{"--dir", dir, "--html", page}, &out, clock); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(page)
		if err != nil || !strings.Contains(string(b), `data-chart="orders-per-minute"`) || !strings.Contains(out.String(), "HTML report written to") {
			t.Fatalf("page %d bytes, %v; output %s", len(b), err, out.String())
		}
	})
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"BadSince", []string{"--dir", dir, "--since", "yesterday"}, "neither a duration"},
		{"SinceAfterUntil", []string{"--dir", dir, "--since", "1h", "--until", "2h"}, "--since must be before --until"},
		{"MissingDir", []string{"--dir", filepath.Join(dir, "nope")}, "no analytics data at"},
		{"StrayArgument", []string{"--dir", dir, "extra"}, "unexpected argument"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := runReport(c.args, &bytes.Buffer{}, clock)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an error with %q, got %v", c.want, err)
			}
		})
	}
}
