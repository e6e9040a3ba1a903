// Package report reads the analytics Parquet files (plain Go over parquet-go, no query
// engine) and computes the business report: orders per minute, revenue by currency,
// payment failure rate and reasons, carts-to-orders conversion, flash-sale sell-out
// time per SKU and checkout-to-PAID percentiles; as text or as one self-contained HTML
// page with inline SVG charts. Rows are de-duplicated by event id, so an event written
// twice (a redelivery after a crash) is counted once.
package report

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/checkout-backend/checkout/internal/analytics"
)

// Window bounds the events read; a zero bound is open.
type Window struct {
	Since, Until time.Time
}

func (w Window) contains(t time.Time) bool {
	return (w.Since.IsZero() || !t.Before(w.Since)) && (w.Until.IsZero() || t.Before(w.Until))
}

// overlapsHour says whether the hour starting at h can hold events of w.
func (w Window) overlapsHour(h time.Time) bool {
	return (w.Since.IsZero() || h.Add(time.Hour).After(w.Since)) && (w.Until.IsZero() || h.Before(w.Until))
}

// Data is every fact of a window, one row per event (and per line).
type Data struct {
	Orders        []analytics.Order
	OrderLines    []analytics.OrderLine
	Payments      []analytics.Payment
	StatusChanges []analytics.StatusChange
	Carts         []analytics.Cart
	Stock         []analytics.Stock
	// Files is the number of Parquet files read; Duplicates the rows dropped as
	// copies of an event already read.
	Files, Duplicates int
}

// Load reads the Parquet files under dir whose partition can hold events of w.
func Load(dir string, w Window) (Data, error) {
	var d Data
	if _, err := os.Stat(dir); err != nil {
		return d, fmt.Errorf("report: %w", err)
	}
	var err error
	if d.Orders, err = loadTable(dir, analytics.TableOrders, w, &d, func(r analytics.Order) string { return r.EventID }); err != nil {
		return d, err
	}
	if d.OrderLines, err = loadTable(dir, analytics.TableOrderLines, w, &d, func(r analytics.OrderLine) string {
		return r.EventID + "/" + strconv.Itoa(int(r.LineNo))
	}); err != nil {
		return d, err
	}
	if d.Payments, err = loadTable(dir, analytics.TablePayments, w, &d, func(r analytics.Payment) string { return r.EventID }); err != nil {
		return d, err
	}
	if d.StatusChanges, err = loadTable(dir, analytics.TableStatusChanges, w, &d, func(r analytics.StatusChange) string { return r.EventID }); err != nil {
		return d, err
	}
	if d.Carts, err = loadTable(dir, analytics.TableCarts, w, &d, func(r analytics.Cart) string { return r.EventID }); err != nil {
		return d, err
	}
	if d.Stock, err = loadTable(dir, analytics.TableStock, w, &d, func(r analytics.Stock) string { return r.EventID }); err != nil {
		return d, err
	}
	return d, nil
}

func loadTable[T any](dir, table string, w Window, d *Data, key func(T) string) ([]T, error) {
	files, err := partitionFiles(filepath.Join(dir, "table="+table), w)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []T
	for _, f := range files {
		rows, err := parquet.ReadFile[T](f)
		if err != nil {
			return nil, fmt.Errorf("report: read %s: %w", f, err)
		}
		d.Files++
		for _, r := range rows {
			if !w.contains(analytics.EventTime(r)) {
				continue
			}
			k := key(r)
			if seen[k] {
				d.Duplicates++
				continue
			}
			seen[k] = true
			out = append(out, r)
		}
	}
	return out, nil
}

// partitionFiles lists root/dt=*/hour=*/*.parquet for the hours w can hold, in name
// order (part names are time-ordered UUIDs).
func partitionFiles(root string, w Window) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == root {
				return filepath.SkipDir
			}
			return err
		}
		name := e.Name()
		if e.IsDir() {
			if path == root {
				return nil
			}
			if strings.HasPrefix(name, "hour=") {
				if h, ok := partitionHour(path); ok && !w.overlapsHour(h) {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || !strings.HasSuffix(name, ".parquet") {
			return nil
		}
		files = append(files, path)
		return nil
	})
	sort.Strings(files)
	return files, err
}

// partitionHour reads the hour a .../dt=YYYY-MM-DD/hour=HH directory holds.
func partitionHour(path string) (time.Time, bool) {
	hour := strings.TrimPrefix(filepath.Base(path), "hour=")
	dt := strings.TrimPrefix(filepath.Base(filepath.Dir(path)), "dt=")
	t, err := time.Parse("2006-01-02 15", dt+" "+hour)
	return t, err == nil
}
