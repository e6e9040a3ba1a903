// Package esink is the Elasticsearch analytics sink: each batch is indexed through the
// bulk API of the official client (go-elasticsearch's esapi over its transport; the
// typed client, which costs minutes of compilation, is not used), one index per table and day
// (PREFIX-orders-2026.11.27), with document ids made from event ids, so indexing an
// event again overwrites its documents instead of adding copies. Items the cluster
// rejects for a passing reason (429, 5xx) are sent again, alone, with backoff.
package esink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/elastic-transport-go/v8/elastictransport"
	"github.com/elastic/go-elasticsearch/v8/esapi"

	"github.com/checkout-backend/checkout/internal/analytics"
)

// Options configure the sink.
type Options struct {
	// IndexPrefix starts every index name (default "checkout").
	IndexPrefix string
	// Attempts bounds the bulk requests of one batch (default 5); Backoff is the first
	// wait between them, doubling (default 200ms).
	Attempts int
	Backoff  time.Duration
}

// Sink indexes batches into Elasticsearch.
type Sink struct {
	es  esapi.Transport
	opt Options
}

// Transport is the client of the Elasticsearch nodes at urls, authenticated with apiKey
// (none when empty); retry retries a request refused with 502, 503 or 504 on another
// node, as the official client does.
func Transport(urls []string, apiKey string, retry bool) (esapi.Transport, error) {
	var nodes []*url.URL
	for _, u := range urls {
		parsed, err := url.Parse(strings.TrimSpace(u))
		if err != nil || parsed.Host == "" {
			return nil, fmt.Errorf("esink: %q is not a URL of an Elasticsearch node", u)
		}
		nodes = append(nodes, parsed)
	}
	if len(nodes) == 0 {
		return nil, errors.New("esink: no Elasticsearch URL")
	}
	opts := []elastictransport.Option{elastictransport.WithURLs(nodes...)}
	if apiKey != "" {
		opts = append(opts, elastictransport.WithAPIKey(apiKey))
	}
	if !retry {
		opts = append(opts, elastictransport.WithDisableRetry())
	}
	return elastictransport.NewClient(opts...)
}

// New returns a sink using es (Transport, or any esapi.Transport such as the official
// *elasticsearch.Client).
func New(es esapi.Transport, opt Options) (*Sink, error) {
	if es == nil {
		return nil, errors.New("esink: nil client")
	}
	if opt.IndexPrefix == "" {
		opt.IndexPrefix = "checkout"
	}
	if opt.Attempts <= 0 {
		opt.Attempts = 5
	}
	if opt.Backoff <= 0 {
		opt.Backoff = 200 * time.Millisecond
	}
	return &Sink{es: es, opt: opt}, nil
}

// Doc is one document of a bulk request.
type Doc struct {
	Index, ID string
	Source    []byte
}

// Index is the index of a table's rows at t: PREFIX-TABLE-YYYY.MM.DD (UTC).
func (s *Sink) Index(table string, t time.Time) string {
	return s.opt.IndexPrefix + "-" + strings.ReplaceAll(table, "_", "-") + "-" + t.UTC().Format("2006.01.02")
}

// Docs are the documents of b, in table order.
func (s *Sink) Docs(b analytics.Batch) ([]Doc, error) {
	var docs []Doc
	add := func(table, id string, row any) error {
		src, err := json.Marshal(row)
		if err != nil {
			return err
		}
		docs = append(docs, Doc{Index: s.Index(table, analytics.EventTime(row)), ID: id, Source: src})
		return nil
	}
	var err error
	for _, r := range b.Orders {
		err = errors.Join(err, add(analytics.TableOrders, r.EventID, r))
	}
	for _, r := range b.OrderLines {
		err = errors.Join(err, add(analytics.TableOrderLines, r.EventID+"-"+strconv.Itoa(int(r.LineNo)), r))
	}
	for _, r := range b.Payments {
		err = errors.Join(err, add(analytics.TablePayments, r.EventID, r))
	}
	for _, r := range b.StatusChanges {
		err = errors.Join(err, add(analytics.TableStatusChanges, r.EventID, r))
	}
	for _, r := range b.Carts {
		err = errors.Join(err, add(analytics.TableCarts, r.EventID, r))
	}
	for _, r := range b.Stock {
		err = errors.Join(err, add(analytics.TableStock, r.EventID, r))
	}
	return docs, err
}

// NDJSON is the bulk request body of docs: an index action line, then the document.
func NDJSON(docs []Doc) []byte {
	var buf bytes.Buffer
	for _, d := range docs {
		meta, _ := json.Marshal(map[string]map[string]string{"index": {"_index": d.Index, "_id": d.ID}})
		buf.Write(meta)
		buf.WriteByte('\n')
		buf.Write(d.Source)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

type bulkResponse struct {
	Errors bool `json:"errors"`
	Items  []map[string]struct {
		Index  string `json:"_index"`
		ID     string `json:"_id"`
		Status int    `json:"status"`
		Error  *struct {
			Type   string `json:"type"`
			Reason string `json:"reason"`
		} `json:"error"`
	} `json:"items"`
}

// Write implements analytics.Sink.
func (s *Sink) Write(ctx context.Context, b analytics.Batch) error {
	docs, err := s.Docs(b)
	if err != nil {
		return fmt.Errorf("esink: %w", err)
	}
	pending := docs
	wait := s.opt.Backoff
	var last error
	for attempt := 1; len(pending) > 0; attempt++ {
		if attempt > 1 {
			select {
			case <-time.After(wait):
				wait *= 2
			case <-ctx.Done():
				return fmt.Errorf("esink: %d documents not indexed: %w", len(pending), ctx.Err())
			}
		}
		if attempt > s.opt.Attempts {
			return fmt.Errorf("esink: %d documents not indexed after %d attempts: %w", len(pending), s.opt.Attempts, last)
		}
		var retry []Doc
		retry, last = s.bulk(ctx, pending)
		if last != nil && retry == nil {
			return last // refused for good
		}
		pending = retry
	}
	return nil
}

// bulk sends docs once. It returns the docs worth sending again (all of them when the
// request itself failed) and an error describing the failures; a non-nil error with no
// docs to retry means some were refused for good.
func (s *Sink) bulk(ctx context.Context, docs []Doc) ([]Doc, error) {
	res, err := esapi.BulkRequest{Body: bytes.NewReader(NDJSON(docs))}.Do(ctx, s.es)
	if err != nil {
		return docs, fmt.Errorf("esink: bulk: %w", err)
	}
	defer res.Body.Close()
	if res.IsError() {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
		if res.StatusCode == 429 || res.StatusCode >= 500 {
			return docs, fmt.Errorf("esink: bulk: %s", res.Status())
		}
		return nil, fmt.Errorf("esink: bulk refused: %s: %s", res.Status(), body)
	}
	var br bulkResponse
	if err := json.NewDecoder(res.Body).Decode(&br); err != nil {
		return docs, fmt.Errorf("esink: bulk response: %w", err)
	}
	if !br.Errors {
		return nil, nil
	}
	if len(br.Items) != len(docs) {
		return docs, fmt.Errorf("esink: bulk answered %d items for %d documents", len(br.Items), len(docs))
	}
	var retry []Doc
	var refused []string
	for i, item := range br.Items {
		for _, r := range item { // one action per item: "index"
			switch {
			case r.Status >= 200 && r.Status < 300:
			case r.Status == 429 || r.Status >= 500:
				retry = append(retry, docs[i])
			default:
				reason := ""
				if r.Error != nil {
					reason = r.Error.Type + ": " + r.Error.Reason
				}
				refused = append(refused, fmt.Sprintf("%s/%s (%d %s)", docs[i].Index, docs[i].ID, r.Status, reason))
			}
		}
	}
	if len(refused) > 0 {
		// A mapping error does not pass with time: fail the batch (its events go back
		// to the broker, then to its dead-letter queue), indexing nothing twice.
		return nil, fmt.Errorf("esink: %d documents refused: %s", len(refused), strings.Join(refused, "; "))
	}
	if len(retry) > 0 {
		return retry, fmt.Errorf("esink: %d documents to retry", len(retry))
	}
	return nil, nil
}
