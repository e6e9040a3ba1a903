// Package parquetsink is the default analytics sink: each batch becomes Parquet files
// in an hourly Hive layout, DIR/table=orders/dt=2026-11-27/hour=13/part-<uuid>.parquet,
// which BigQuery, ClickHouse and DuckDB load as they are. A file is written under a
// hidden temporary name, synced, then renamed into place (and its directory synced),
// so a reader never sees a half-written file and a written batch survives a crash.
package parquetsink

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"

	"github.com/checkout-backend/checkout/internal/analytics"
)

// File is a Parquet file the sink put in place.
type File struct {
	Table string
	// Path is the file's path; Rel is the same path relative to the sink's directory.
	Path, Rel string
	Rows      int
}

// Sink writes batches as Parquet files under Dir.
type Sink struct {
	dir string
	// OnFile, when set, is called with the files of each batch once all are in place
	// (the BigQuery sink loads them); an error fails the batch's Write.
	OnFile func(ctx context.Context, files []File) error
}

// New returns a sink writing under dir (created when missing).
func New(dir string) (*Sink, error) {
	if dir == "" {
		return nil, errors.New("parquetsink: empty directory")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("parquetsink: %w", err)
	}
	return &Sink{dir: dir}, nil
}

// Dir is the sink's directory.
func (s *Sink) Dir() string { return s.dir }

// Partition is the Hive partition directory of a table at t (UTC).
func Partition(table string, t time.Time) string {
	t = t.UTC()
	return filepath.Join("table="+table, "dt="+t.Format("2006-01-02"), fmt.Sprintf("hour=%02d", t.Hour()))
}

// Write implements analytics.Sink: one file per table and hour the batch touches.
func (s *Sink) Write(ctx context.Context, b analytics.Batch) error {
	var files []File
	for _, w := range []func() ([]File, error){
		func() ([]File, error) { return writeTable(s.dir, analytics.TableOrders, b.Orders) },
		func() ([]File, error) { return writeTable(s.dir, analytics.TableOrderLines, b.OrderLines) },
		func() ([]File, error) { return writeTable(s.dir, analytics.TablePayments, b.Payments) },
		func() ([]File, error) { return writeTable(s.dir, analytics.TableStatusChanges, b.StatusChanges) },
		func() ([]File, error) { return writeTable(s.dir, analytics.TableCarts, b.Carts) },
		func() ([]File, error) { return writeTable(s.dir, analytics.TableStock, b.Stock) },
	} {
		fs, err := w()
		if err != nil {
			return err
		}
		files = append(files, fs...)
	}
	if s.OnFile != nil && len(files) > 0 {
		return s.OnFile(ctx, files)
	}
	return nil
}

func writeTable[T any](dir, table string, rows []T) ([]File, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	parts := map[string][]T{}
	for _, r := range rows {
		p := Partition(table, analytics.EventTime(r))
		parts[p] = append(parts[p], r)
	}
	keys := make([]string, 0, len(parts))
	for k := range parts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var files []File
	for _, part := range keys {
		rel := filepath.Join(part, "part-"+uuid.Must(uuid.NewV7()).String()+".parquet")
		if err := writeFile(filepath.Join(dir, rel), parts[part]); err != nil {
			return files, fmt.Errorf("parquetsink: %s: %w", rel, err)
		}
		files = append(files, File{Table: table, Path: filepath.Join(dir, rel), Rel: rel, Rows: len(parts[part])})
	}
	return files, nil
}

// writeFile writes rows to a hidden temporary file beside path (readers skip names
// starting with '.'), syncs it, renames it to path and syncs the directory.
func writeFile[T any](path string, rows []T) (err error) {
	d := filepath.Dir(path)
	if err := mkdirSynced(d); err != nil {
		return err
	}
	// Not *.parquet: no glob of a reader (DuckDB, a load job) matches a file in progress.
	tmp, err := os.CreateTemp(d, ".part-*.inprogress")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// zstd at its fastest level: these files are small and written beside the checkouts,
	// whose CPU counts more than a few percent of file size (the default level's encoder
	// was 5% of the service's CPU under load).
	w := parquet.NewGenericWriter[T](tmp, parquet.Compression(&zstd.Codec{Level: zstd.SpeedFastest}))
	if _, err = w.Write(rows); err != nil {
		return err
	}
	if err = w.Close(); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(d)
}

// mkdirSynced creates dir and its missing parents, syncing the parent of each one it
// creates, so the new entries survive a crash along with the file.
func mkdirSynced(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirSynced(parent); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return syncDir(parent)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
