package bqsink_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bq "google.golang.org/api/bigquery/v2"
	"google.golang.org/api/option"

	"github.com/checkout-backend/checkout/internal/analytics"
	"github.com/checkout-backend/checkout/internal/analytics/bqsink"
	"github.com/checkout-backend/checkout/internal/analytics/report"
)

// loadRequest is one jobs.insert upload as BigQuery's REST API takes it: a
// multipart/related body whose first part is the job resource (JSON) and whose second
// is the file.
type loadRequest struct {
	Path, Query string
	Job         struct {
		JobReference struct {
			ProjectID string `json:"projectId"`
			JobID     string `json:"jobId"`
		} `json:"jobReference"`
		Configuration struct {
			Labels map[string]string `json:"labels"`
			Load   struct {
				SourceFormat      string `json:"sourceFormat"`
				WriteDisposition  string `json:"writeDisposition"`
				CreateDisposition string `json:"createDisposition"`
				DestinationTable  struct {
					ProjectID string `json:"projectId"`
					DatasetID string `json:"datasetId"`
					TableID   string `json:"tableId"`
				} `json:"destinationTable"`
				TimePartitioning struct {
					Type  string `json:"type"`
					Field string `json:"field"`
				} `json:"timePartitioning"`
			} `json:"load"`
		} `json:"configuration"`
	}
	Media []byte
}

// fakeBigQuery answers the upload (jobs.insert) and jobs.get as BigQuery does; conflict
// makes every insert answer 409 Already Exists (the job was run before).
type fakeBigQuery struct {
	t        *testing.T
	mu       sync.Mutex
	loads    []loadRequest
	gets     []string
	conflict bool
	// running makes a job answer RUNNING until it was looked up once; failed makes it
	// end with an error.
	running, failed bool
}

func (f *fakeBigQuery) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/upload/bigquery/v2/projects/shop-analytics/jobs"):
		lr := loadRequest{Path: r.URL.Path, Query: r.URL.RawQuery}
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/related" {
			f.t.Errorf("upload Content-Type %q", r.Header.Get("Content-Type"))
			w.WriteHeader(400)
			return
		}
		mr := multipart.NewReader(r.Body, params["boundary"])
		for i := 0; ; i++ {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				f.t.Errorf("multipart: %v", err)
				return
			}
			b, _ := io.ReadAll(p)
			if i == 0 {
				if err := json.Unmarshal(b, &lr.Job); err != nil {
					f.t.Errorf("job resource: %v: %s", err, b)
				}
			} else {
				lr.Media = b
			}
		}
		f.mu.Lock()
		f.loads = append(f.loads, lr)
		conflict := f.conflict
		f.mu.Unlock()
		if conflict {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintf(w, `{"error":{"code":409,"message":"Already Exists: Job shop-analytics:US.%s","errors":[{"reason":"duplicate","message":"Already Exists"}],"status":"ALREADY_EXISTS"}}`, lr.Job.JobReference.JobID)
			return
		}
		fmt.Fprint(w, f.jobResource(lr.Job.JobReference.JobID, !f.running))
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/bigquery/v2/projects/shop-analytics/jobs/"):
		id := strings.TrimPrefix(r.URL.Path, "/bigquery/v2/projects/shop-analytics/jobs/")
		f.mu.Lock()
		f.gets = append(f.gets, id)
		f.mu.Unlock()
		fmt.Fprint(w, f.jobResource(id, true))
	default:
		f.t.Errorf("unexpected %s %s", r.Method, r.URL)
		w.WriteHeader(404)
	}
}

func (f *fakeBigQuery) jobResource(id string, done bool) string {
	status := `{"state":"RUNNING"}`
	switch {
	case done && f.failed:
		status = `{"state":"DONE","errorResult":{"reason":"invalid","message":"Parquet schema mismatch"}}`
	case done:
		status = `{"state":"DONE"}`
	}
	return fmt.Sprintf(`{"kind":"bigquery#job","id":"shop-analytics:US.%[1]s","jobReference":{"projectId":"shop-analytics","jobId":%[1]q,"location":"US"},
		"configuration":{"jobType":"LOAD","load":{"sourceFormat":"PARQUET"}},"status":%[2]s,"statistics":{"load":{"outputRows":"1"}}}`, id, status)
}

func newSink(t *testing.T, f *fakeBigQuery) (*bqsink.Sink, string) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	ctx := context.Background()
	api, err := bq.NewService(ctx, option.WithEndpoint(srv.URL+"/bigquery/v2/"),
		option.WithoutAuthentication(), option.WithHTTPClient(srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s, err := bqsink.New(dir, api, "shop-analytics", "checkout")
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

var at = time.Date(2026, 11, 27, 13, 5, 7, 0, time.UTC)

func batch() analytics.Batch {
	return analytics.Batch{
		Orders:   []analytics.Order{{EventID: "e1", OrderID: "o1", CustomerID: "c1", PlacedAt: at, TotalCents: 3998, Currency: "USD", Lines: 1, Units: 2}},
		Payments: []analytics.Payment{{EventID: "e2", OrderID: "o1", Outcome: "succeeded", AmountCents: 3998, Currency: "USD", OccurredAt: at}},
	}
}

// TestLoadJob_Request: each Parquet file of a batch becomes one load job, uploaded as
// BigQuery's REST API documents jobs.insert with media: PARQUET, WRITE_APPEND into
// DATASET.TABLE, day-partitioned by the event time, with the file's bytes as the media.
func TestLoadJob_Request(t *testing.T) {
	t.Parallel()
	f := &fakeBigQuery{t: t}
	s, dir := newSink(t, f)
	if err := s.Write(context.Background(), batch()); err != nil {
		t.Fatal(err)
	}
	if len(f.loads) != 2 {
		t.Fatalf("%d load jobs, want 2 (orders and payments)", len(f.loads))
	}
	d, err := report.Load(dir, report.Window{})
	if err != nil || d.Files != 2 {
		t.Fatalf("local files: %d, %v", d.Files, err)
	}
	for i, table := range []string{"orders", "payments"} {
		lr := f.loads[i]
		job, load := lr.Job, lr.Job.Configuration.Load
		if !strings.Contains(lr.Query, "uploadType=multipart") {
			t.Errorf("upload query %q", lr.Query)
		}
		if job.JobReference.ProjectID != "shop-analytics" || !strings.HasPrefix(job.JobReference.JobID, "checkout_"+table+"_") {
			t.Errorf("job reference %+v", job.JobReference)
		}
		if load.SourceFormat != "PARQUET" || load.WriteDisposition != "WRITE_APPEND" || load.CreateDisposition != "CREATE_IF_NEEDED" ||
			load.DestinationTable.ProjectID != "shop-analytics" || load.DestinationTable.DatasetID != "checkout" || load.DestinationTable.TableID != table ||
			load.TimePartitioning.Type != "DAY" || load.TimePartitioning.Field != map[string]string{"orders": "placed_at", "payments": "occurred_at"}[table] {
			t.Errorf("load configuration %+v", load)
		}
		// The media is the Parquet file itself.
		matches, _ := globParquet(dir, table)
		if len(matches) != 1 {
			t.Fatalf("%s files: %v", table, matches)
		}
		want, _ := os.ReadFile(matches[0])
		if !bytes.Equal(lr.Media, want) || !bytes.HasPrefix(lr.Media, []byte("PAR1")) {
			t.Errorf("%s media is not its Parquet file (%d bytes, want %d)", table, len(lr.Media), len(want))
		}
	}
}

// TestLoadJob_AlreadyExists_WaitsForTheEarlierJob: a file loaded by an earlier attempt
// (its job id exists: 409) is not appended again; the sink waits for that job.
func TestLoadJob_AlreadyExists_WaitsForTheEarlierJob(t *testing.T) {
	t.Parallel()
	f := &fakeBigQuery{t: t, conflict: true}
	s, _ := newSink(t, f)
	if err := s.Write(context.Background(), batch()); err != nil {
		t.Fatal(err)
	}
	if len(f.loads) != 2 {
		t.Fatalf("%d loads, want 2", len(f.loads))
	}
	for _, lr := range f.loads {
		if !slices.Contains(f.gets, lr.Job.JobReference.JobID) {
			t.Fatalf("job %s not looked up after its 409 (gets %v)", lr.Job.JobReference.JobID, f.gets)
		}
	}
}

func globParquet(dir, table string) ([]string, error) {
	return filepath.Glob(filepath.Join(dir, "table="+table, "dt=*", "hour=*", "*.parquet"))
}

// TestLoadJob_WaitsUntilDone_AndSaysWhyItFailed: a job still running is looked up until
// it is done; one that ends with an error fails the batch with BigQuery's reason, so the
// events are given back to the broker and loaded again.
func TestLoadJob_WaitsUntilDone_AndSaysWhyItFailed(t *testing.T) {
	t.Parallel()
	f := &fakeBigQuery{t: t, running: true}
	s, _ := newSink(t, f)
	if err := s.Write(context.Background(), batch()); err != nil {
		t.Fatal(err)
	}
	if len(f.gets) != 2 {
		t.Fatalf("%d lookups of 2 running jobs, want one each", len(f.gets))
	}
	f = &fakeBigQuery{t: t, failed: true}
	s, _ = newSink(t, f)
	if err := s.Write(context.Background(), batch()); err == nil || !strings.Contains(err.Error(), "Parquet schema mismatch") {
		t.Fatalf("a failed load job: %v, want its reason", err)
	}
}
