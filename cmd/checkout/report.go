package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/checkout-backend/checkout/internal/analytics/report"
	"github.com/checkout-backend/checkout/internal/platform/config"
)

// runReport prints the analytics report of the Parquet files under --dir, and writes
// it as an HTML page with --html.
func runReport(args []string, stdout io.Writer, now func() time.Time) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stdout)
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	dir := fs.String("dir", cfg.Analytics.Dir, "the analytics Parquet directory (ANALYTICS_DIR)")
	htmlOut := fs.String("html", "", "also write the report as a self-contained HTML page to this file")
	since := fs.String("since", "", "only events at or after this: a duration back from now (24h) or a time (2026-11-27T13:00:00Z)")
	until := fs.String("until", "", "only events before this: a duration back from now or a time")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("report: unexpected argument %q", fs.Arg(0))
	}
	var w report.Window
	if w.Since, err = parseWhen(*since, now()); err != nil {
		return fmt.Errorf("report: --since: %w", err)
	}
	if w.Until, err = parseWhen(*until, now()); err != nil {
		return fmt.Errorf("report: --until: %w", err)
	}
	if !w.Since.IsZero() && !w.Until.IsZero() && !w.Since.Before(w.Until) {
		return errors.New("report: --since must be before --until")
	}
	if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
		return fmt.Errorf("report: no analytics data at %s (set --dir or ANALYTICS_DIR)", *dir)
	}
	d, err := report.Load(*dir, w)
	if err != nil {
		return err
	}
	r := report.Compute(d)
	if *htmlOut != "" {
		var page bytes.Buffer
		if err := report.HTML(&page, r); err != nil {
			return err
		}
		// Written whole, then renamed: never a half page.
		tmp := *htmlOut + ".tmp"
		if err := os.WriteFile(tmp, page.Bytes(), 0o644); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		if err := os.Rename(tmp, *htmlOut); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		abs, _ := filepath.Abs(*htmlOut)
		defer fmt.Fprintf(stdout, "\nHTML report written to %s\n", abs)
	}
	return report.Text(stdout, r)
}

// parseWhen reads "" (open), a duration back from now, or an RFC 3339 time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("duration %s is negative", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (24h) nor an RFC 3339 time (2026-11-27T13:00:00Z)", s)
}
