package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/checkout-backend/checkout/internal/loadgen"
)

const checkoutMutation = `mutation ChaosCheckout($input: CheckoutInput!) {
  checkout(input: $input) { order { id } userErrors { code } }
}`

// balancer is the load balancer in front of the instances: round robin, and a request
// that got no answer from one instance (refused, reset) goes to the next. A checkout
// is idempotent by its key, so sending it again is safe.
type balancer struct {
	backends []string
	next     atomic.Uint64
	rt       http.RoundTripper
}

// RoundTrip sends req to the next instance, and to the others while none answers.
func (b *balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	start := b.next.Add(1)
	var last error
	for i := range b.backends {
		host := b.backends[(int(start)+i)%len(b.backends)]
		r := req.Clone(req.Context())
		r.URL.Host, r.Host = host, host
		r.Body = io.NopCloser(bytes.NewReader(body))
		resp, err := b.rt.RoundTrip(r)
		if err == nil {
			return resp, nil
		}
		last = err
	}
	return nil, last
}

// outcome is one checkout request as the client saw it.
type outcome struct {
	sent, done time.Time
	orderID    string // acknowledged
	oos        bool   // OUT_OF_STOCK
	err        string // no answer (transport error, 5xx, GraphQL error)
}

// load is the sale: a steady rate of checkouts, half of them for the flash-sale SKU, half
// spread over the catalog, from many customers.
type load struct {
	atk      *vegeta.Attacker
	mu       sync.Mutex
	outcomes []outcome
	done     chan struct{}
}

func startLoad(backends []string, tokens []string, rate int, flash string, spread []string) *load {
	lb := &balancer{backends: backends, rt: &http.Transport{MaxIdleConnsPerHost: 64}}
	atk := vegeta.NewAttacker(vegeta.Client(&http.Client{Transport: lb, Timeout: 30 * time.Second}),
		vegeta.Workers(32), vegeta.MaxWorkers(256), vegeta.Redirects(vegeta.NoFollow))
	var seq atomic.Uint64
	var rmu sync.Mutex
	r := rand.New(rand.NewPCG(1, 2))
	targeter := func(t *vegeta.Target) error {
		i := seq.Add(1)
		rmu.Lock()
		items := []any{map[string]any{"sku": flash, "quantity": 1}}
		if r.IntN(2) == 0 {
			items = []any{map[string]any{"sku": spread[r.IntN(len(spread))], "quantity": 1 + r.IntN(2)}}
		}
		rmu.Unlock()
		body, err := json.Marshal(map[string]any{"operationName": "ChaosCheckout", "query": checkoutMutation,
			"variables": map[string]any{"input": map[string]any{"idempotencyKey": fmt.Sprintf("chaos-%d", i), "paymentToken": "tok_visa", "items": items}}})
		if err != nil {
			return err
		}
		t.Method, t.URL, t.Body = http.MethodPost, "http://balancer/graphql", body
		t.Header = http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + tokens[i%uint64(len(tokens))]}}
		return nil
	}
	l := &load{atk: atk, done: make(chan struct{})}
	results := atk.Attack(targeter, vegeta.ConstantPacer{Freq: rate, Per: time.Second}, 0, "chaos")
	go func() {
		defer close(l.done)
		for res := range results {
			l.mu.Lock()
			l.outcomes = append(l.outcomes, classify(res))
			l.mu.Unlock()
		}
	}()
	return l
}

func classify(res *vegeta.Result) outcome {
	c := loadgen.ReadCheckout(res)
	return outcome{sent: res.Timestamp, done: res.End(), orderID: c.OrderID, oos: c.OutOfStock, err: c.Err}
}

// stop ends the attack once the requests in flight are answered.
func (l *load) stop() []outcome {
	l.atk.Stop()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]outcome(nil), l.outcomes...)
}

// wait blocks until ctx ends (the load goes on meanwhile).
func wait(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
