// Package bqsink is the BigQuery analytics sink: batches are written as Parquet files
// (parquetsink, the same layout), then each file is appended to its table by a load job
// through BigQuery's REST API (google.golang.org/api/bigquery/v2, the API the
// cloud.google.com/go/bigquery client wraps, without its storage-read and gRPC
// dependencies), uploaded from the local file. A job's id is made from the file's name,
// so loading a file again (a retried batch) finds the first job instead of appending its
// rows twice.
package bqsink

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"time"

	bq "google.golang.org/api/bigquery/v2"
	"google.golang.org/api/googleapi"

	"github.com/checkout-backend/checkout/internal/analytics"
	"github.com/checkout-backend/checkout/internal/analytics/parquetsink"
)

// Sink writes Parquet files and loads them into BigQuery.
type Sink struct {
	files   *parquetsink.Sink
	api     *bq.Service
	project string
	dataset string
}

// New returns a sink keeping its files under dir and loading them into project's
// dataset through api (bq.NewService; credentials: Application Default Credentials).
func New(dir string, api *bq.Service, project, dataset string) (*Sink, error) {
	if api == nil || project == "" || dataset == "" {
		return nil, errors.New("bqsink: a BigQuery service, a project and a dataset are required")
	}
	files, err := parquetsink.New(dir)
	if err != nil {
		return nil, err
	}
	s := &Sink{files: files, api: api, project: project, dataset: dataset}
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
	job := &bq.Job{
		JobReference: &bq.JobReference{ProjectId: s.project, JobId: JobID(f)},
		Configuration: &bq.JobConfiguration{
			Labels: map[string]string{"source": "checkout-analytics", "table": f.Table},
			Load: &bq.JobConfigurationLoad{
				SourceFormat:      "PARQUET",
				WriteDisposition:  "WRITE_APPEND",
				CreateDisposition: "CREATE_IF_NEEDED",
				DestinationTable:  &bq.TableReference{ProjectId: s.project, DatasetId: s.dataset, TableId: f.Table},
				TimePartitioning:  &bq.TimePartitioning{Type: "DAY", Field: partitionField[f.Table]},
			},
		},
	}
	got, err := s.api.Jobs.Insert(s.project, job).Media(r).Context(ctx).Do()
	var gerr *googleapi.Error
	if errors.As(err, &gerr) && gerr.Code == http.StatusConflict {
		// Loaded by an earlier attempt: wait for that job instead.
		got, err = s.api.Jobs.Get(s.project, job.JobReference.JobId).Context(ctx).Do()
	}
	if err != nil {
		return err
	}
	return s.wait(ctx, got)
}

// wait polls the job until it is done, backing off from half a second to five, and
// returns its error, if any.
func (s *Sink) wait(ctx context.Context, job *bq.Job) error {
	for pause := 500 * time.Millisecond; ; pause = min(2*pause, 5*time.Second) {
		if job.Status != nil && job.Status.State == "DONE" {
			if e := job.Status.ErrorResult; e != nil {
				return fmt.Errorf("job %s: %s: %s", job.JobReference.JobId, e.Reason, e.Message)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		get := s.api.Jobs.Get(s.project, job.JobReference.JobId).Context(ctx)
		if loc := job.JobReference.Location; loc != "" {
			get = get.Location(loc)
		}
		next, err := get.Do()
		if err != nil {
			return err
		}
		job = next
	}
}
