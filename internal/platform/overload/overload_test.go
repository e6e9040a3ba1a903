package overload_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/platform/overload"
)

const (
	checkoutBody = `{"query":"mutation Place($i: CheckoutInput!) { checkout(input: $i) { order { id } } }","variables":{"i":{}}}`
	readBody     = `{"query":"{ products { edges { node { sku } } } }"}`
)

func post(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Test-Class", string(map[string]overload.Class{checkoutBody: overload.Checkout, readBody: overload.Read}[body]))
	return r
}

// newShedder is overload.New with the tests' classifier: the class post put in a
// header (the API's classifier, which reads GraphQL, is gqlhttp.Classify).
func newShedder(o overload.Options) *overload.Shedder {
	if o.Classify == nil {
		o.Classify = func(r *http.Request) (overload.Class, overload.Cost) {
			if c := r.Header.Get("X-Test-Class"); c != "" {
				return overload.Class(c), overload.Cost{}
			}
			return overload.Other, overload.Cost{}
		}
	}
	return overload.New(o)
}

// serve runs one request through h.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// checkRefusal asserts a refusal's status, Retry-After and default body.
func checkRefusal(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d", w.Code, status)
	}
	if s, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("Retry-After %q; want whole seconds >= 1", w.Header().Get("Retry-After"))
	}
	if got, want := w.Body.String(), http.StatusText(status)+"\n"; got != want {
		t.Errorf("body %q, want %q", got, want)
	}
}

func TestBulkhead_BurstBeyondTheLimitGets503_ReadsStillServed(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var served atomic.Int32
	var rejected sync.Map
	s := newShedder(overload.Options{
		Limits:   map[overload.Class]int{overload.Checkout: 2, overload.Read: 2},
		MaxWait:  50 * time.Millisecond,
		OnReject: func(c overload.Class, status int) { rejected.Store(c, status) },
	})
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), "checkout") {
			served.Add(1)
			<-release
		}
		w.Write([]byte(`{"data":{}}`))
	}))

	const burst = 10
	results := make(chan *httptest.ResponseRecorder, burst)
	for range burst {
		go func() { results <- serve(h, post(checkoutBody)) }()
	}
	// Everyone beyond the two slots and their two waiters is refused at once; the two
	// waiters after MaxWait.
	start := time.Now()
	for range burst - 2 {
		w := <-results
		checkRefusal(t, w, http.StatusServiceUnavailable)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("refusals took %v; want about MaxWait", took)
	}
	if n := s.InFlight(overload.Checkout); n != 2 {
		t.Errorf("in flight %d, want 2", n)
	}
	// The read bulkhead is its own: a read goes through while checkout is full.
	if w := serve(h, post(readBody)); w.Code != http.StatusOK {
		t.Errorf("read during a checkout burst: %d", w.Code)
	}
	close(release)
	for range 2 {
		if w := <-results; w.Code != http.StatusOK {
			t.Errorf("admitted checkout: %d", w.Code)
		}
	}
	if served.Load() != 2 {
		t.Errorf("%d checkouts reached the handler, want 2", served.Load())
	}
	if st, _ := rejected.Load(overload.Checkout); st != http.StatusServiceUnavailable {
		t.Errorf("OnReject not told: %v", st)
	}
	if n := s.InFlight(overload.Checkout); n != 0 {
		t.Errorf("slots leaked: %d in flight", n)
	}
}

func TestBulkhead_ShortQueueWaitsForASlot(t *testing.T) {
	t.Parallel()
	s := newShedder(overload.Options{Limits: map[overload.Class]int{overload.Read: 1}, MaxWait: 2 * time.Second})
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // the behaviour under test: a request holds its slot a while
	}))
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if w := serve(h, post(readBody)); w.Code != http.StatusOK {
				t.Errorf("status %d; a request within MaxWait must be served", w.Code)
			}
		})
	}
	wg.Wait()
}

func TestRate_ClientOverItsRateGets429_OthersUnaffected(t *testing.T) {
	t.Parallel()
	s := newShedder(overload.Options{Rate: 1, Burst: 3})
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	from := func(ip string) *http.Request {
		r := post(readBody)
		r.RemoteAddr = ip + ":4242"
		return r
	}
	for i := range 3 {
		if w := serve(h, from("10.0.0.1")); w.Code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d", i, w.Code)
		}
	}
	w := serve(h, from("10.0.0.1"))
	checkRefusal(t, w, http.StatusTooManyRequests)
	if w.Header().Get("Retry-After") != "1" {
		t.Errorf("Retry-After %q; one token comes back within 1s", w.Header().Get("Retry-After"))
	}
	if w := serve(h, from("10.0.0.2")); w.Code != http.StatusOK {
		t.Errorf("another client: %d", w.Code)
	}
}

// The body of a refusal is the caller's (the API answers GraphQL errors): Reject is
// told the status once Retry-After is set, and writes the rest.
func TestReject_WritesTheAnswerAfterRetryAfter(t *testing.T) {
	t.Parallel()
	var told []string
	s := newShedder(overload.Options{Rate: 0.001, Burst: 1, RetryAfter: 3 * time.Second,
		Limits: map[overload.Class]int{overload.Read: 1}, MaxWait: -1,
		Reject: func(w http.ResponseWriter, r *http.Request, status int) {
			told = append(told, fmt.Sprint(status, " after ", w.Header().Get("Retry-After"), " for ", r.RemoteAddr))
			w.WriteHeader(status)
			w.Write([]byte("custom"))
		}})
	hold, release := make(chan struct{}), make(chan struct{})
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RemoteAddr == "10.0.0.1:1" {
			close(hold)
			<-release
		}
	}))
	from := func(addr string) *http.Request {
		r := post(readBody)
		r.RemoteAddr = addr
		return r
	}
	done := make(chan struct{})
	go func() { serve(h, from("10.0.0.1:1")); close(done) }()
	<-hold
	if w := serve(h, from("10.0.0.2:1")); w.Code != http.StatusServiceUnavailable || w.Body.String() != "custom" {
		t.Errorf("busy: %d %q", w.Code, w.Body.String())
	}
	close(release)
	<-done
	if w := serve(h, from("10.0.0.1:1")); w.Code != http.StatusTooManyRequests || w.Body.String() != "custom" {
		t.Errorf("over the rate: %d %q", w.Code, w.Body.String())
	}
	want := []string{"503 after 3 for 10.0.0.2:1", "429 after 1000 for 10.0.0.1:1"} // a token every 1000s
	if fmt.Sprint(told) != fmt.Sprint(want) {
		t.Errorf("Reject told %q, want %q", told, want)
	}
}

func TestRate_KeyedByJWTSubjectBeforeIP(t *testing.T) {
	t.Parallel()
	s := newShedder(overload.Options{Rate: 0.001, Burst: 1})
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	as := func(sub string) *http.Request {
		r := post(readBody)
		r.RemoteAddr = "10.0.0.9:1" // one office NAT
		if sub != "" {
			r = r.WithContext(auth.WithActor(r.Context(), checkout.Actor{CustomerID: sub}))
		}
		return r
	}
	for _, sub := range []string{"alice", "bob", ""} {
		if w := serve(h, as(sub)); w.Code != http.StatusOK {
			t.Errorf("first request of %q: %d", sub, w.Code)
		}
	}
	for _, sub := range []string{"alice", "bob", ""} {
		if w := serve(h, as(sub)); w.Code != http.StatusTooManyRequests {
			t.Errorf("second request of %q: %d, want 429", sub, w.Code)
		}
	}
}

func TestSteadyClientWithinBudget_KeepsSucceeding(t *testing.T) {
	t.Parallel()
	s := newShedder(overload.Options{
		Limits:  map[overload.Class]int{overload.Checkout: 4, overload.Read: 4},
		Rate:    rate.Limit(50), // a token every 20ms
		Burst:   5,              // absorbs the scheduling jitter of a busy test machine
		MaxWait: 100 * time.Millisecond,
	})
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond) // the behaviour under test: each request takes a little work
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	// 25 requests a second: half the client's budget, for a second and a half.
	for i := range 40 {
		time.Sleep(40 * time.Millisecond) // the behaviour under test: a steady client's pace
		body := readBody
		if i%3 == 0 {
			body = checkoutBody
		}
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d of a steady client: %d", i, resp.StatusCode)
		}
	}
}

func TestClientBuckets_AreBounded(t *testing.T) {
	t.Parallel()
	s := newShedder(overload.Options{Rate: 0.001, Burst: 1, MaxClients: 10, MaxAnonymousClients: 10})
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	as := func(sub string) *http.Request {
		r := post(readBody)
		return r.WithContext(auth.WithActor(r.Context(), checkout.Actor{CustomerID: sub}))
	}
	for i := range 1000 {
		serve(h, as(fmt.Sprint("customer-", i)))
	}
	// The first customer's bucket was dropped with the least recently seen: it starts
	// afresh, which proves only MaxClients buckets are held.
	if w := serve(h, as("customer-0")); w.Code != http.StatusOK {
		t.Errorf("status %d: the first customer's bucket is still held", w.Code)
	}

	// Anonymous clients: the table holds 10 buckets, none of them full, so dropping one
	// would hand its owner a fresh bucket. The newcomers share one bucket instead: of
	// 990 new addresses one is served, and the first 10 keep their empty buckets.
	from := func(i int) *http.Request {
		r := post(readBody)
		r.RemoteAddr = fmt.Sprintf("10.1.%d.%d:1", i/256, i%256)
		return r
	}
	served := 0
	for i := range 1000 {
		if serve(h, from(i)).Code == http.StatusOK {
			served++
		}
	}
	if served != 11 {
		t.Errorf("%d of 1000 anonymous clients served; want the 10 kept and one for the newcomers", served)
	}
	if w := serve(h, from(0)); w.Code != http.StatusTooManyRequests {
		t.Errorf("the first anonymous client got a fresh bucket: %d", w.Code)
	}
}

// A POST whose operation is a subscription is parsed and validated before the transport
// refuses it: it takes a token like any request, and a WebSocket upgrade takes one too.
func TestRate_SubscriptionOverPOSTAndUpgradesAreRateLimited(t *testing.T) {
	t.Parallel()
	s := newShedder(overload.Options{Rate: 0.001, Burst: 1})
	var served atomic.Int32
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	sub := func() *http.Request {
		r := post(`{"query":"subscription { orderStatusChanged(orderId: \"1\") { id } }"}`)
		r.RemoteAddr = "10.0.0.7:1"
		return r
	}
	if w := serve(h, sub()); w.Code != http.StatusOK {
		t.Fatalf("first: %d", w.Code)
	}
	checkRefusal(t, serve(h, sub()), http.StatusTooManyRequests)
	upgrade := func() *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/graphql", nil)
		r.Header.Set("Upgrade", "websocket")
		r.RemoteAddr = "10.0.0.8:1"
		return r
	}
	if w := serve(h, upgrade()); w.Code != http.StatusOK {
		t.Fatalf("first upgrade: %d", w.Code)
	}
	checkRefusal(t, serve(h, upgrade()), http.StatusTooManyRequests)
	if n := served.Load(); n != 2 {
		t.Fatalf("%d requests reached the handler, want 2", n)
	}
}

// Behind a reverse proxy every shopper comes from the proxy's address: the client is the
// rightmost address of X-Forwarded-For that is not a trusted proxy, and the header is
// believed only from a trusted proxy.
func TestClients_TrustedProxies(t *testing.T) {
	t.Parallel()
	trusted, err := overload.ParsePrefixes([]string{"10.0.0.0/8", " 192.0.2.1 "})
	if err != nil {
		t.Fatal(err)
	}
	clients, err := overload.NewClients(trusted, "")
	if err != nil {
		t.Fatal(err)
	}
	req := func(peer string, headers ...string) *http.Request {
		r := post(readBody)
		r.RemoteAddr = peer
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Add(headers[i], headers[i+1])
		}
		return r
	}
	for _, tc := range []struct {
		name string
		r    *http.Request
		want string
	}{
		{"no proxy", req("198.51.100.9:5000"), "ip:198.51.100.9"},
		{"spoofed header from an untrusted peer", req("198.51.100.9:5000", "X-Forwarded-For", "203.0.113.50"), "ip:198.51.100.9"},
		{"through the proxy", req("10.1.2.3:5000", "X-Forwarded-For", "203.0.113.7"), "ip:203.0.113.7"},
		{"a client's own entry comes first", req("10.1.2.3:5000", "X-Forwarded-For", "1.2.3.4, 203.0.113.7"), "ip:203.0.113.7"},
		{"two trusted hops", req("192.0.2.1:5000", "X-Forwarded-For", "203.0.113.8, 10.9.9.9"), "ip:203.0.113.8"},
		{"header repeated", req("10.1.2.3:5000", "X-Forwarded-For", "1.2.3.4", "X-Forwarded-For", "203.0.113.9"), "ip:203.0.113.9"},
		{"Forwarded is not the configured header", req("10.1.2.3:5000", "Forwarded", "for=203.0.113.10"), "ip:10.1.2.3"},
		{"IPv6 peer", req("[2001:db8::1]:5000", "X-Forwarded-For", "203.0.113.11"), "ip:2001:db8::/64"},
	} {
		if got := clients.Key(tc.r); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	fwd, err := overload.NewClients(trusted, "Forwarded")
	if err != nil {
		t.Fatal(err)
	}
	if got := fwd.Key(req("10.1.2.3:5000", "Forwarded", `for="[2001:db8:cafe::17]:4711";proto=https`)); got != "ip:2001:db8:cafe::/64" {
		t.Errorf("Forwarded: %s", got)
	}
	if _, err := overload.NewClients(nil, "X-Real-IP"); err == nil {
		t.Error("an unsupported header accepted")
	}
	if _, err := overload.ParsePrefixes([]string{"10.0.0.0/33"}); err == nil {
		t.Error("a bad prefix accepted")
	}

	// The rate limit then tells two shoppers behind the proxy apart, and a spoofed header
	// from outside buys no fresh bucket.
	s := newShedder(overload.Options{Rate: 0.001, Burst: 1, ClientKey: clients.Key})
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, shopper := range []string{"203.0.113.20", "203.0.113.21"} {
		if w := serve(h, req("10.1.2.3:5000", "X-Forwarded-For", shopper)); w.Code != http.StatusOK {
			t.Errorf("shopper %s behind the proxy: %d", shopper, w.Code)
		}
	}
	if w := serve(h, req("198.51.100.30:1")); w.Code != http.StatusOK {
		t.Fatalf("outsider: %d", w.Code)
	}
	if w := serve(h, req("198.51.100.30:1", "X-Forwarded-For", "203.0.113.99")); w.Code != http.StatusTooManyRequests {
		t.Errorf("a spoofed X-Forwarded-For got a fresh bucket: %d", w.Code)
	}
}

// M5: an anonymous IPv6 client is its /64 (CLIENT_IPV6_PREFIX): a host holds a whole
// /64, so 200 of its addresses are one client, not 200 fresh buckets. IPv4 (and IPv4
// written as IPv6) stays per address.
func TestM5_AddressesOfOneIPv6Slash64AreOneClient(t *testing.T) {
	t.Parallel()
	s := newShedder(overload.Options{Rate: 0.001, Burst: 5})
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	from := func(addr string) *httptest.ResponseRecorder {
		r := post(readBody)
		r.RemoteAddr = addr
		return serve(h, r)
	}
	served := 0
	for i := range 200 {
		if from(fmt.Sprintf("[2001:db8:1:2:%x:%x::1]:443", i, i*7)).Code == http.StatusOK {
			served++
		}
	}
	if served != 5 {
		t.Fatalf("%d of 200 requests from one /64 served, want the burst of 5", served)
	}
	if w := from("[2001:db8:1:3::1]:443"); w.Code != http.StatusOK {
		t.Errorf("the next /64 is another client: %d", w.Code)
	}
	// IPv4 is per address, written as IPv4 or as IPv4-mapped IPv6.
	for range 5 {
		from("192.0.2.10:1")
	}
	if w := from("[::ffff:192.0.2.10]:1"); w.Code != http.StatusTooManyRequests {
		t.Errorf("an IPv4-mapped address is its IPv4 address: %d", w.Code)
	}
	if w := from("192.0.2.11:1"); w.Code != http.StatusOK {
		t.Errorf("the next IPv4 address is another client: %d", w.Code)
	}
}

// M5: anonymous clients cannot evict an authenticated client's bucket: 20,000 anonymous
// addresses (more than the buckets kept) leave a card tester's empty bucket empty.
func TestM5_AnonymousChurnDoesNotResetAnAuthenticatedBucket(t *testing.T) {
	t.Parallel()
	s := newShedder(overload.Options{Rate: 0.001, Burst: 1})
	h := s.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tester := func() *httptest.ResponseRecorder {
		r := post(readBody)
		r.RemoteAddr = "198.51.100.1:1"
		return serve(h, r.WithContext(auth.WithActor(r.Context(), checkout.Actor{CustomerID: "card-tester"})))
	}
	if w := tester(); w.Code != http.StatusOK {
		t.Fatalf("first request: %d", w.Code)
	}
	for i := range 20000 {
		r := post(readBody)
		r.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1", i>>16, (i>>8)&255, i&255)
		serve(h, r)
	}
	if w := tester(); w.Code != http.StatusTooManyRequests {
		t.Fatalf("after 20,000 anonymous clients the card tester's bucket is full again: %d", w.Code)
	}
}

// M3: a request's cost is taken all or nothing: a checkout refused by the checkout rate
// leaves the client's other tokens where they were, and no request costs more than a
// full bucket.
func TestM3_AllowTakesTheWholeCostOrNothing(t *testing.T) {
	t.Parallel()
	s := overload.New(overload.Options{Rate: 0.001, Burst: 3, CheckoutRate: 0.001, CheckoutBurst: 1})
	steps := []struct {
		cost overload.Cost
		ok   bool
	}{
		{overload.Cost{Operations: 1, Checkouts: 1}, true},
		{overload.Cost{Operations: 1, Checkouts: 1}, false}, // no checkout token left
		{overload.Cost{Operations: 2}, true},                // the refused checkout took none
		{overload.Cost{}, false},                            // a request costs at least one
	}
	for i, st := range steps {
		if wait, ok := s.Allow("sub:alice", st.cost); ok != st.ok || (!ok && wait <= 0) {
			t.Fatalf("step %d %+v: ok %v wait %v, want ok %v", i, st.cost, ok, wait, st.ok)
		}
	}
	if _, ok := s.Allow("sub:bob", overload.Cost{Operations: 50}); !ok {
		t.Error("a cost above the burst must take the full bucket, not be refused for ever")
	}
	if _, ok := s.AllowKey("sub:bob"); ok {
		t.Error("the full bucket was not taken")
	}
}
