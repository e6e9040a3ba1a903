package systest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/time/rate"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/platform/overload"
	"github.com/checkout-backend/checkout/internal/platform/telemetry/telemetrytest"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// Not parallel: it installs the global tracer provider.
//
// One checkout is one trace, from the HTTP request to the payment's event, with every
// reservation strategy: the batch strategy and the payment store commit many callers
// together, and each caller's events still carry its own trace.
func TestTrace_OneCheckoutOneTrace(t *testing.T) {
	for _, strategy := range []store.Strategy{store.StrategyLock, store.StrategyBatch} {
		t.Run(string(strategy), func(t *testing.T) { oneCheckoutOneTrace(t, strategy) })
	}
}

func oneCheckoutOneTrace(t *testing.T, strategy store.Strategy) {
	exp := telemetrytest.Record(t)
	s := testutil.NewStack(t, testutil.StackOptions{Tracing: true, Strategy: strategy})
	s.Product(t, "TR", 100, map[string]int{"w": 10})
	resp := s.Do(t, testutil.Token(t, "alice"), `mutation Place($in: CheckoutInput!) { checkout(input: $in) { order { id } } }`,
		map[string]any{"in": map[string]any{"idempotencyKey": "k", "paymentToken": "tok_visa", "items": []any{map[string]any{"sku": "TR", "quantity": 1}}}})
	var r struct {
		Checkout struct{ Order struct{ ID string } }
	}
	json.Unmarshal(resp.Data, &r)
	s.WaitStatus(t, r.Checkout.Order.ID, checkout.StatusPaid, 10*time.Second)

	want := map[string]func(string) bool{
		"HTTP request":        func(n string) bool { return strings.Contains(n, "POST") || strings.Contains(n, "/graphql") },
		"resolver":            func(n string) bool { return n == "Mutation.checkout" },
		"SQL":                 func(n string) bool { return strings.HasPrefix(n, "SELECT") || strings.HasPrefix(n, "INSERT") },
		"relay publish":       func(n string) bool { return strings.HasPrefix(n, "publish order.placed") },
		"worker":              func(n string) bool { return strings.Contains(n, "order.placed") && strings.Contains(n, "process") },
		"payment call":        func(n string) bool { return strings.HasPrefix(n, "payment.charge") },
		"the outcome's event": func(n string) bool { return strings.HasPrefix(n, "publish order.paid") },
	}
	// The last spans (the outcome's event) end after the order is PAID: wait for them.
	var spans tracetest.SpanStubs
	var names []string
	complete := func() bool {
		spans = exp.GetSpans()
		var traceID string
		for _, sp := range spans {
			if strings.Contains(sp.Name, "checkout") && strings.HasPrefix(sp.Name, "Mutation") {
				traceID = sp.SpanContext.TraceID().String()
			}
		}
		names = names[:0]
		for _, sp := range spans {
			if traceID != "" && sp.SpanContext.TraceID().String() == traceID {
				names = append(names, sp.Name)
			}
		}
		for _, match := range want {
			if !slices.ContainsFunc(names, match) {
				return false
			}
		}
		return true
	}
	if !testutil.Within(10*time.Second, complete) {
		sort.Strings(names)
		for what, match := range want {
			if !slices.ContainsFunc(names, match) {
				t.Errorf("the checkout's trace has no %s span; it has %v", what, names)
			}
		}
		t.FailNow()
	}
	// The token never reaches a span.
	for _, sp := range spans {
		for _, a := range sp.Attributes {
			if strings.Contains(a.Value.String(), "tok_visa") {
				t.Fatalf("span %s carries the payment token in %s", sp.Name, a.Key)
			}
		}
	}
}

// Not parallel: it installs the global tracer provider.
//
// Checkouts placed together in one batch transaction (and paid in one settlement) each
// keep their own trace: every checkout's trace holds its own order.placed and order.paid
// publications and its payment, and the batch's span links every checkout it served.
func TestTrace_BatchedCheckoutsEachKeepTheirTrace(t *testing.T) {
	exp := telemetrytest.Record(t)
	s := testutil.NewStack(t, testutil.StackOptions{Tracing: true, Strategy: store.StrategyBatch})
	s.Product(t, "TB", 100, map[string]int{"w": 100})
	const n = 12
	ids := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = testutil.Token(t, fmt.Sprint("buyer", i))
	}
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := s.Post(tokens[i], `mutation Place($in: CheckoutInput!) { checkout(input: $in) { order { id } } }`,
				map[string]any{"in": map[string]any{"idempotencyKey": "k", "paymentToken": "tok_visa", "items": []any{map[string]any{"sku": "TB", "quantity": 1}}}})
			if err != nil {
				t.Errorf("checkout %d: %v", i, err)
				return
			}
			var r struct {
				Checkout struct{ Order struct{ ID string } }
			}
			json.Unmarshal(resp.Data, &r)
			ids[i] = r.Checkout.Order.ID
		}()
	}
	close(start)
	wg.Wait()
	for _, id := range ids {
		s.WaitStatus(t, id, checkout.StatusPaid, 10*time.Second)
	}
	want := []string{"publish order.placed", "process order.placed", "payment.charge", "publish order.paid"}
	var problems []string
	check := func() bool {
		spans := exp.GetSpans()
		byTrace := map[string][]string{}
		linked := map[string]bool{}
		var checkouts []string
		batched := false
		for _, sp := range spans {
			tid := sp.SpanContext.TraceID().String()
			byTrace[tid] = append(byTrace[tid], sp.Name)
			if sp.Name == "Mutation.checkout" {
				checkouts = append(checkouts, tid)
			}
			if sp.Name == "store.checkout_batch" {
				batched = batched || len(sp.Links) > 1
				for _, l := range sp.Links {
					linked[l.SpanContext.TraceID().String()] = true
				}
			}
		}
		problems = problems[:0]
		if !batched {
			problems = append(problems, "no batch served two checkouts")
		}
		if len(checkouts) != n {
			problems = append(problems, fmt.Sprintf("%d checkout traces, want %d", len(checkouts), n))
		}
		for _, tid := range checkouts {
			for _, w := range want {
				if !slices.ContainsFunc(byTrace[tid], func(name string) bool { return strings.HasPrefix(name, w) }) {
					problems = append(problems, fmt.Sprintf("trace %s has no %q span: %v", tid[:8], w, byTrace[tid]))
				}
			}
			if !linked[tid] {
				problems = append(problems, fmt.Sprintf("no batch span links trace %s", tid[:8]))
			}
		}
		return len(problems) == 0
	}
	if !testutil.Within(10*time.Second, check) {
		t.Fatalf("%d problems, first ones: %v", len(problems), problems[:min(len(problems), 5)])
	}
}

// post sends a GraphQL request over HTTP; safe from any goroutine.
func post(url, token, query string, vars map[string]any) (*http.Response, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

func TestOverload_BurstShedSteadyClientServed(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	shed := overload.New(overload.Options{
		Limits:  map[overload.Class]int{overload.Checkout: 4, overload.Read: 64, overload.Other: 8},
		MaxWait: 50 * time.Millisecond, Rate: rate.Limit(20), Burst: 10, Classify: gqlhttp.Classify(nil),
	})
	api := testutil.NewAPI(t, db, testutil.APIOptions{Overload: shed.Middleware})
	api.Product(t, "HOT", 100, map[string]int{"w": 100000})
	srv := httptest.NewServer(api.Handler)
	defer srv.Close()
	url := srv.URL + "/graphql"
	http.DefaultTransport.(*http.Transport).MaxIdleConnsPerHost = 512

	var mu sync.Mutex
	statuses := map[int]int{}
	var missingRetryAfter int
	record := func(resp *http.Response, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			statuses[-1]++
			return
		}
		statuses[resp.StatusCode]++
		if (resp.StatusCode == 503 || resp.StatusCode == 429) && resp.Header.Get("Retry-After") == "" {
			missingRetryAfter++
		}
	}
	// The steady client reads 10 times a second, well inside its budget.
	var steady []time.Duration
	var steadyBad []int
	stop := make(chan struct{})
	var swg sync.WaitGroup
	swg.Add(1)
	tok := testutil.Token(t, "steady")
	go func() {
		defer swg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond): // the steady client's pace
			}
			start := time.Now()
			resp, err := post(url, tok, `query { products(first: 5) { edges { node { sku available } } } }`, nil)
			if err != nil || resp.StatusCode != 200 {
				code := -1
				if resp != nil {
					code = resp.StatusCode
				}
				steadyBad = append(steadyBad, code)
				continue
			}
			mu.Lock()
			steady = append(steady, time.Since(start))
			mu.Unlock()
		}
	}()
	steadyReads := func() int { mu.Lock(); defer mu.Unlock(); return len(steady) }
	testutil.Eventually(t, 10*time.Second, "the steady client served before the burst", func() bool { return steadyReads() >= 3 })

	// The burst: 400 shoppers check out at once, and one client floods reads.
	var wg sync.WaitGroup
	shoppers := make([]string, 400)
	for i := range shoppers {
		shoppers[i] = testutil.Token(t, fmt.Sprint("shopper", i))
	}
	for i := 0; i < 400; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			record(post(url, shoppers[i], `mutation($in: CheckoutInput!) { checkout(input: $in) { order { id } } }`,
				map[string]any{"in": map[string]any{"idempotencyKey": "k", "paymentToken": "tok_visa", "items": []any{map[string]any{"sku": "HOT", "quantity": 1}}}}))
		}(i)
	}
	flood := testutil.Token(t, "flood")
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			record(post(url, flood, `query { product(sku: "HOT") { available } }`, nil))
		}()
	}
	wg.Wait()
	// The steady client goes on being served after the burst.
	after := steadyReads()
	testutil.Eventually(t, 10*time.Second, "the steady client served after the burst", func() bool { return steadyReads() >= after+3 })
	close(stop)
	swg.Wait()

	for code := range statuses {
		if code != 200 && code != 503 && code != 429 {
			t.Fatalf("statuses %v: only 200, 503 and 429 may answer", statuses)
		}
	}
	if statuses[503] == 0 || statuses[429] == 0 || missingRetryAfter > 0 {
		t.Fatalf("statuses %v, %d refusals without Retry-After: want 503s for the burst and 429s for the flood", statuses, missingRetryAfter)
	}
	if len(steadyBad) > 0 {
		t.Fatalf("the steady client was refused: %v", steadyBad)
	}
	sort.Slice(steady, func(i, j int) bool { return steady[i] < steady[j] })
	t.Logf("burst answers %v; steady client: %d reads, p50 %s, max %s", statuses, len(steady), steady[len(steady)/2], steady[len(steady)-1])
	// No more sold than placed, and the service takes checkouts again.
	placed := api.Count(t, "SELECT count(*) FROM orders")
	if _, reserved := api.Stock(t, "HOT"); reserved != placed {
		t.Fatalf("reserved %d for %d orders", reserved, placed)
	}
	resp, err := post(url, testutil.Token(t, "after"), `mutation($in: CheckoutInput!) { checkout(input: $in) { order { id } } }`,
		map[string]any{"in": map[string]any{"idempotencyKey": "k", "paymentToken": "tok_visa", "items": []any{map[string]any{"sku": "HOT", "quantity": 1}}}})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the burst: %v %v", resp, err)
	}
}
