package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// checkoutMutation is the measured operation. Its name labels the service's logs and
// metrics.
const checkoutMutation = `mutation BenchCheckout($input: CheckoutInput!) {
  checkout(input: $input) { order { id status } userErrors { code field message } }
}`

// acceptHeader asks for the GraphQL-over-HTTP media type (status codes per that spec).
const acceptHeader = "application/graphql-response+json, application/json;q=0.9"

// attackPlan is one workload's load: where, how much, and what each request carries.
type attackPlan struct {
	name        string
	url         string // the /graphql endpoint
	duration    time.Duration
	requests    uint64
	concurrency int
	rate        int
	timeout     time.Duration
	progress    time.Duration
	keyPrefix   string        // idempotency keys are keyPrefix + sequence number
	headers     []http.Header // one per customer token, used round-robin
	items       func() []lineItem
}

// loadStats is what the attack itself measures.
type loadStats struct {
	Requests    uint64
	Elapsed     time.Duration // first request sent to last answer received
	Placed      uint64
	LastPlaced  time.Duration // when the last successful checkout was answered, from the first request
	OutOfStock  uint64
	Errors      map[string]uint64 // any other answer, by kind
	Latency     vegeta.LatencyMetrics
	Interrupted bool
}

// OtherErrors is the number of answers that were neither an order nor OUT_OF_STOCK.
func (s *loadStats) OtherErrors() uint64 {
	var n uint64
	for _, v := range s.Errors {
		n += v
	}
	return n
}

func perSecond(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// targeter makes a fresh checkout request per call: a unique idempotency key, the next
// customer, a new basket. Vegeta calls it from many workers at once.
func (p *attackPlan) targeter() vegeta.Targeter {
	var seq atomic.Uint64
	return func(t *vegeta.Target) error {
		i := seq.Add(1) - 1
		if p.requests > 0 && i >= p.requests {
			return vegeta.ErrNoTargets
		}
		body, err := json.Marshal(map[string]any{
			"operationName": "BenchCheckout",
			"query":         checkoutMutation,
			"variables": map[string]any{"input": map[string]any{
				"idempotencyKey": fmt.Sprintf("%s-%d", p.keyPrefix, i),
				"paymentToken":   "tok_visa",
				"items":          p.items(),
			}},
		})
		if err != nil {
			return err
		}
		t.Method = http.MethodPost
		t.URL = p.url
		t.Body = body
		t.Header = p.headers[i%uint64(len(p.headers))] // Target.Request copies it
		return nil
	}
}

// lockedItems serialises a workload's item picks over one seeded generator.
func lockedItems(w *workload, catalog []productSpec, seed uint64) func() []lineItem {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	return func() []lineItem {
		mu.Lock()
		defer mu.Unlock()
		return w.items(r, catalog)
	}
}

// attack runs the plan through a vegeta.Attacker, at most p.concurrency requests in
// flight, and classifies every answer. Cancelling ctx stops it early (the requests in
// flight still complete).
func attack(ctx context.Context, p attackPlan, progress io.Writer) *loadStats {
	atk := vegeta.NewAttacker(
		vegeta.Workers(uint64(p.concurrency)),
		vegeta.MaxWorkers(uint64(p.concurrency)),
		vegeta.Connections(p.concurrency),
		vegeta.MaxConnections(p.concurrency),
		vegeta.KeepAlive(true),
		vegeta.Timeout(p.timeout),
		vegeta.Redirects(vegeta.NoFollow),
	)
	pacer := vegeta.ConstantPacer{Freq: p.rate, Per: time.Second} // Freq 0: unbounded
	results := atk.Attack(p.targeter(), pacer, p.duration, p.name)

	var (
		m          vegeta.Metrics
		stats      = &loadStats{Errors: map[string]uint64{}}
		lastPlaced time.Time
		tick       <-chan time.Time
		done       = ctx.Done()
		start      = time.Now()
	)
	if p.progress > 0 {
		t := time.NewTicker(p.progress)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case res, ok := <-results:
			if !ok {
				m.Close()
				stats.Requests = m.Requests
				stats.Elapsed = m.Duration + m.Wait
				stats.Latency = m.Latencies
				if stats.Placed > 0 {
					stats.LastPlaced = lastPlaced.Sub(m.Earliest)
				}
				return stats
			}
			if res.Method == "" && res.Error == vegeta.ErrNoTargets.Error() {
				continue // the targeter's end-of-requests signal, not a request
			}
			m.Add(res)
			switch kind := classify(res); kind {
			case kindPlaced:
				stats.Placed++
				if end := res.End(); end.After(lastPlaced) {
					lastPlaced = end
				}
			case kindOutOfStock:
				stats.OutOfStock++
			default:
				stats.Errors[kind]++
			}
		case <-tick:
			fmt.Fprintf(progress, "  [%s] %s: %d requests, %d placed, %d OUT_OF_STOCK, %d other; p99 so far %s\n",
				p.name, time.Since(start).Round(time.Second), m.Requests, stats.Placed, stats.OutOfStock,
				stats.OtherErrors(), fmtDur(m.Latencies.Quantile(0.99)))
		case <-done:
			done = nil
			stats.Interrupted = true
			atk.Stop()
		}
	}
}

const (
	kindPlaced     = "placed"
	kindOutOfStock = "OUT_OF_STOCK"
)

// checkoutAnswer is the part of a checkout response the bench looks at.
type checkoutAnswer struct {
	Data *struct {
		Checkout *struct {
			Order *struct {
				ID string `json:"id"`
			} `json:"order"`
			UserErrors []struct {
				Code string `json:"code"`
			} `json:"userErrors"`
		} `json:"checkout"`
	} `json:"data"`
	Errors []gqlError `json:"errors"`
}

// classify names the outcome of one request: kindPlaced, kindOutOfStock, or a short
// description of anything else ("HTTP 503", "GraphQL INTERNAL_SERVER_ERROR", ...).
func classify(res *vegeta.Result) string {
	if res.Code == 0 {
		return "transport: " + transportError(res.Error)
	}
	var a checkoutAnswer
	decodeErr := json.Unmarshal(res.Body, &a)
	if res.Code != http.StatusOK {
		kind := fmt.Sprintf("HTTP %d", res.Code)
		if decodeErr == nil && len(a.Errors) > 0 {
			kind += " " + errorName(a.Errors[0])
		}
		return kind
	}
	switch {
	case decodeErr != nil:
		return "undecodable response"
	case len(a.Errors) > 0:
		return "GraphQL " + errorName(a.Errors[0])
	case a.Data == nil || a.Data.Checkout == nil:
		return "no checkout payload"
	case a.Data.Checkout.Order != nil:
		return kindPlaced
	case len(a.Data.Checkout.UserErrors) == 0:
		return "neither order nor userErrors"
	}
	codes := make([]string, 0, len(a.Data.Checkout.UserErrors))
	for _, e := range a.Data.Checkout.UserErrors {
		codes = append(codes, e.Code)
	}
	if len(codes) == 1 && codes[0] == kindOutOfStock {
		return kindOutOfStock
	}
	return "userErrors " + strings.Join(codes, ",")
}

func errorName(e gqlError) string {
	if e.Extensions.Code != "" {
		return e.Extensions.Code
	}
	msg := e.Message
	if len(msg) > 60 {
		msg = msg[:60] + "…"
	}
	return fmt.Sprintf("%q", msg)
}

var (
	addrRe    = regexp.MustCompile(`\[?[0-9a-fA-F.:]+\]?:\d+`)
	urlPrefix = regexp.MustCompile(`^[A-Za-z]+ "[^"]*": `)
)

// transportError shortens a client error to its kind: no URL, no ephemeral ports, so
// that equal failures count together.
func transportError(e string) string {
	if e == "" {
		return "unknown"
	}
	e = urlPrefix.ReplaceAllString(e, "")
	return addrRe.ReplaceAllString(e, "<addr>")
}
