// Package bqsink is the BigQuery analytics sink: batches are written as Parquet files
// (parquetsink, the same layout), then each file is appended to its table by a load job
// through the official client (cloud.google.com/go/bigquery), uploaded from the local
// file. A job's id is made from the file's name, so loading a file again (a retried
// batch) finds the first job instead of appending its rows twice.
package bqsink

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"cloud.google.com/go/bigquery"
	"google.golang.org/api/googleapi"

	"github.com/checkout-backend/checkout/internal/analytics"
	"github.com/checkout-backend/checkout/internal/analytics/parquetsink"
)

// Sink writes Parquet files and loads them into BigQuery.
type Sink struct {
	files   *parquetsink.Sink
	client  *bigquery.Client
	dataset string
}

// New returns a sink keeping its files under dir and loading them into dataset.
func New(dir string, client *bigquery.Client, dataset string) (*Sink, error) {
	if client == nil || dataset == "" {
		return nil, errors.New("bqsink: a client and a dataset are required")
	}
	files, err := parquetsink.New(dir)
	if err != nil {
		return nil, err
	}
	s := &Sink{files: files, client: client, dataset: dataset}
	files.OnFile = s.load
	return s, nil
}

// Write implements analytics.Sink: the batch's files, then one load job per file.
func (s *Sink) Write(ctx context.Context, b analytics.Batch) error { return s.files.Write(ctx, b) }

// partitionField is the column each table is partitioned by (by day) when a load
// creates it.
var partitionField = map[string]string{
	analytics.TableOrders: "placed_at", analytics.TableOrderLines: "placed_at", analytics.TablePayments: "occurred_at",
	analytics.TableStatusChanges: "occurred_at", analytics.TableCarts: "created_at", analytics.TableStock: "observed_at",
}

// JobID is the load job id of a file: its table and its unique part name.
func JobID(f parquetsink.File) string {
	part := strings.TrimSuffix(filepath.Base(f.Rel), ".parquet")
	return "checkout_" + f.Table + "_" + strings.TrimPrefix(part, "part-")
}

func (s *Sink) load(ctx context.Context, files []parquetsink.File) error {
	for _, f := range files {
		if err := s.loadFile(ctx, f); err != nil {
			return fmt.Errorf("bqsink: load %s: %w", f.Rel, err)
		}
	}
	return nil
}

func (s *Sink) loadFile(ctx context.Context, f parquetsink.File) error {
	r, err := os.Open(f.Path)
	if err != nil {
		return err
	}
	defer r.Close()
	src := bigquery.NewReaderSource(r)
	src.SourceFormat = bigquery.Parquet
	l := s.client.Dataset(s.dataset).Table(f.Table).LoaderFrom(src)
	l.WriteDisposition = bigquery.WriteAppend
	l.CreateDisposition = bigquery.CreateIfNeeded
	l.TimePartitioning = &bigquery.TimePartitioning{Type: bigquery.DayPartitioningType, Field: partitionField[f.Table]}
	l.JobID = JobID(f)
	l.Labels = map[string]string{"source": "checkout-analytics", "table": f.Table}
	job, err := l.Run(ctx)
	var gerr *googleapi.Error
	if errors.As(err, &gerr) && gerr.Code == http.StatusConflict {
		// Loaded by an earlier attempt: wait for that job instead.
		job, err = s.client.JobFromID(ctx, l.JobID)
	}
	if err != nil {
		return err
	}
	status, err := job.Wait(ctx)
	if err != nil {
		return err
	}
	return status.Err()
}
