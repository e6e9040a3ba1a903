package workers_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/internal/webhook"
)

// verify checks a Checkout-Signature as a partner would (README).
func verify(secret, header string, body []byte, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)) > tolerance {
		return fmt.Errorf("bad or old timestamp")
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	want, _ := hex.DecodeString(sig)
	if !hmac.Equal(m.Sum(nil), want) {
		return fmt.Errorf("signature mismatch")
	}
	return nil
}

type received struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	Data struct {
		Order struct {
			ID       string `json:"id"`
			Status   string `json:"status"`
			Sequence int    `json:"sequence"`
		} `json:"order"`
	} `json:"data"`
}

// receiver is a partner endpoint that fails the first failures requests.
type receiver struct {
	mu       sync.Mutex
	secret   string
	failures int
	calls    int
	ok       []received
	bad      []string
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if err := verify(r.secret, req.Header.Get("Checkout-Signature"), body, 5*time.Minute); err != nil {
		r.bad = append(r.bad, err.Error())
		w.WriteHeader(400)
		return
	}
	if r.calls <= r.failures {
		w.WriteHeader(500)
		return
	}
	var ev received
	json.Unmarshal(body, &ev)
	if ev.ID != req.Header.Get("Checkout-Event-Id") || req.Header.Get("Content-Type") != "application/json" {
		r.bad = append(r.bad, "headers")
	}
	r.ok = append(r.ok, ev)
	w.WriteHeader(204)
}

func (r *receiver) snapshot() ([]received, int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.ok...), r.calls, append([]string(nil), r.bad...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settled waits until the fan-out has made the endpoint's tasks (one per event it takes)
// and none of them is still to be sent (PENDING, QUEUED) or in flight (a PENDING task
// stays PENDING until its attempt is recorded). From then on no delivery to the endpoint
// can start: what its receiver got is all it will get, with no sleep to guess how long
// a late one would take.
func settled(t *testing.T, s *testutil.Stack, webhookID string, tasks int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the endpoint's %d tasks made, none left to send", tasks), func() bool { return isSettled(t, s, webhookID, tasks) })
}

func isSettled(t *testing.T, s *testutil.Stack, webhookID string, tasks int) bool {
	return s.Count(t, "SELECT count(*) FROM webhook_tasks WHERE webhook_id = ?", webhookID) == tasks &&
		s.Count(t, "SELECT count(*) FROM webhook_tasks WHERE webhook_id = ? AND status IN ('PENDING', 'QUEUED')", webhookID) == 0
}

func newService(s *testutil.Stack, allowPrivate bool) *webhook.Service {
	return webhook.NewService(s.WebhookStore, webhook.Policy{AllowPrivate: allowPrivate}, func() string { return uuid.Must(uuid.NewV7()).String() })
}

func TestPartnerWebhooks_FailThreeTimesThenSucceed_OnceAndInOrder(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{Webhooks: true})
	s.Product(t, "PW", 100, map[string]int{"w": 10})
	rcv := &receiver{failures: 3}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	wh, secret, err := newService(s, true).Register(context.Background(), admin, srv.URL+"/hooks", []string{"*"})
	if err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	rcv.secret = secret
	rcv.mu.Unlock()
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret %q", secret)
	}

	id := s.Checkout(t, "alice", "k", "tok_visa", checkout.Line{SKU: "PW", Quantity: 1})
	waitFor(t, "two successful deliveries", func() bool { ok, _, _ := rcv.snapshot(); return len(ok) >= 2 })
	settled(t, s, wh.ID, 2)
	ok, calls, bad := rcv.snapshot()
	if len(bad) > 0 {
		t.Fatalf("bad deliveries: %v", bad)
	}
	if len(ok) != 2 || ok[0].Type != "order.placed" || ok[0].Data.Order.Sequence != 1 || ok[1].Type != "order.paid" || ok[1].Data.Order.Sequence != 2 {
		t.Fatalf("received %+v, want order.placed (1) then order.paid (2), each once", ok)
	}
	if ok[0].Data.Order.ID != id || ok[0].Data.Order.Status != "PENDING_PAYMENT" || ok[1].Data.Order.Status != "PAID" {
		t.Fatalf("bodies: %+v", ok)
	}
	if calls != 5 {
		t.Fatalf("%d calls, want 5 (3 failures, then one per event)", calls)
	}
	waitFor(t, "five attempts recorded", func() bool { return s.Count(t, "SELECT count(*) FROM webhook_deliveries") >= 5 })
	page, err := s.WebhookStore.Deliveries(context.Background(), wh.ID, 20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Deliveries) != 5 {
		t.Fatalf("%d recorded attempts, want 5", len(page.Deliveries))
	}
	// Newest first: order.paid attempt 1, then order.placed attempts 4..1.
	if d := page.Deliveries[0]; d.EventType != "order.paid" || d.Attempt != 1 || *d.StatusCode != 204 {
		t.Fatalf("newest attempt %+v", d)
	}
	if d := page.Deliveries[4]; d.EventType != "order.placed" || d.Attempt != 1 || *d.StatusCode != 500 {
		t.Fatalf("oldest attempt %+v", d)
	}
}

func TestPartnerWebhooks_FailingEndpointDisabled_EnableReplays(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{Webhooks: true, WebhookDelivery: store.DeliveryPolicy{DisableAfter: 3, Retry: webhook.Retry{MaxAge: time.Minute}}})
	s.Product(t, "PD", 100, map[string]int{"w": 10})
	rcv := &receiver{failures: 1 << 30}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	svc := newService(s, true)
	wh, secret, err := svc.Register(context.Background(), admin, srv.URL, []string{"order.placed", "order.paid"})
	if err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	rcv.secret = secret
	rcv.mu.Unlock()
	id := s.Checkout(t, "alice", "k", "tok_visa", checkout.Line{SKU: "PD", Quantity: 1})
	waitFor(t, "the endpoint disabled", func() bool {
		w, _ := s.WebhookStore.Get(context.Background(), wh.ID)
		return w != nil && !w.Enabled
	})
	w, _ := s.WebhookStore.Get(context.Background(), wh.ID)
	if w.DisabledReason == nil || !strings.Contains(*w.DisabledReason, "3 consecutive failed deliveries") {
		t.Fatalf("reason %v", w.DisabledReason)
	}
	s.WaitStatus(t, id, checkout.StatusPaid, 10*time.Second)
	// An order placed after the disable: its events are fanned out to the disabled
	// endpoint and wait PAUSED, sent to nobody.
	later := s.Checkout(t, "bob", "k", "tok_visa", checkout.Line{SKU: "PD", Quantity: 1})
	s.WaitStatus(t, later, checkout.StatusPaid, 10*time.Second)
	waitFor(t, "the endpoint's 4 tasks made, none left to send (or a call after the disable)", func() bool {
		_, calls, _ := rcv.snapshot()
		return calls > 3 || isSettled(t, s, wh.ID, 4)
	})
	if _, calls, _ := rcv.snapshot(); calls != 3 {
		t.Fatalf("%d calls, want 3: none after the endpoint was disabled", calls)
	}
	if n := s.Count(t, "SELECT count(*) FROM webhook_tasks WHERE webhook_id = ? AND status = 'PAUSED'", wh.ID); n != 4 {
		t.Fatalf("%d of the disabled endpoint's 4 tasks PAUSED", n)
	}

	// The partner fixes its endpoint; re-enabling replays every event, each order's in order.
	rcv.mu.Lock()
	rcv.failures = 0
	rcv.mu.Unlock()
	if _, err := svc.Enable(context.Background(), admin, wh.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replay", func() bool { ok, _, _ := rcv.snapshot(); return len(ok) >= 4 })
	settled(t, s, wh.ID, 4)
	ok, _, bad := rcv.snapshot()
	sequences := map[string][]int{}
	for _, ev := range ok {
		sequences[ev.Data.Order.ID] = append(sequences[ev.Data.Order.ID], ev.Data.Order.Sequence)
	}
	if len(bad) > 0 || len(ok) != 4 || !slices.Equal(sequences[id], []int{1, 2}) || !slices.Equal(sequences[later], []int{1, 2}) {
		t.Fatalf("replayed %+v (bad %v), want each order's placed then paid, once", ok, bad)
	}
	if w, _ := s.WebhookStore.Get(context.Background(), wh.ID); !w.Enabled || w.DisabledReason != nil {
		t.Fatalf("after enable: %+v", w)
	}
}

func TestPartnerWebhooks_DeletedEndpointGetsNothing(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{Webhooks: true})
	s.Product(t, "PX", 100, map[string]int{"w": 10})
	rcv := &receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	svc := newService(s, true)
	wh, _, err := svc.Register(context.Background(), admin, srv.URL, []string{"*"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Delete(context.Background(), admin, wh.ID); err != nil {
		t.Fatal(err)
	}
	id := s.Checkout(t, "alice", "k", "tok_visa", checkout.Line{SKU: "PX", Quantity: 1})
	s.WaitStatus(t, id, checkout.StatusPaid, 10*time.Second)
	// With no endpoint left the fan-out writes nothing, not even its inbox row. What proves
	// it handled the order's events: the fan-out takes events one at a time, in the order
	// they were published; once both are published, an endpoint registered now and sent a
	// later event gets it only after the fan-out went past them.
	testutil.Eventually(t, 10*time.Second, "the order's events published", func() bool {
		return s.Count(t, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
	})
	live := &receiver{}
	liveSrv := httptest.NewServer(live)
	defer liveSrv.Close()
	_, liveSecret, err := svc.Register(context.Background(), admin, liveSrv.URL, []string{"order.placed"})
	if err != nil {
		t.Fatal(err)
	}
	live.mu.Lock()
	live.secret = liveSecret
	live.mu.Unlock()
	later := s.Checkout(t, "bob", "k", "tok_visa", checkout.Line{SKU: "PX", Quantity: 1})
	waitFor(t, "the later order delivered to the live endpoint", func() bool {
		ok, _, _ := live.snapshot()
		// The first order's too, had the fan-out not reached it before the registration.
		return slices.ContainsFunc(ok, func(r received) bool { return r.Data.Order.ID == later })
	})
	if n := s.Count(t, "SELECT count(*) FROM webhook_tasks WHERE webhook_id = ?", wh.ID); n != 0 {
		t.Fatalf("%d delivery tasks made for a deleted endpoint", n)
	}
	if _, calls, _ := rcv.snapshot(); calls != 0 {
		t.Fatalf("%d deliveries to a deleted endpoint", calls)
	}
	if list, _ := svc.List(context.Background(), admin); len(list) != 1 || list[0].ID == wh.ID {
		t.Fatalf("deleted endpoint still listed: %+v", list)
	}
	if _, err := svc.Delete(context.Background(), admin, wh.ID); checkout.ErrorCode(err) != checkout.NotFound {
		t.Fatalf("second delete: %v", err)
	}
}

func TestPartnerWebhooks_SSRFRefused(t *testing.T) {
	t.Parallel()
	strict := webhook.Policy{AllowPrivate: false}
	dev := webhook.Policy{AllowPrivate: true}
	for _, u := range []string{
		"http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://100.100.100.200/",
		"http://[fd00:ec2::254]/", "http://0.0.0.0/", "ftp://example.com/", "file:///etc/passwd",
		"http://user:pass@8.8.8.8/", "not a url", "http:///nohost",
	} {
		for _, p := range []webhook.Policy{strict, dev} {
			if err := p.ValidateURL(context.Background(), u); checkout.ErrorCode(err) != checkout.InvalidWebhookURL {
				t.Errorf("allowPrivate=%v %s: %v, want INVALID_WEBHOOK_URL", p.AllowPrivate, u, err)
			}
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080/", "http://localhost/", "http://10.1.2.3/", "http://192.168.0.10/", "http://[::1]/", "http://172.16.5.4/"} {
		if err := strict.ValidateURL(context.Background(), u); checkout.ErrorCode(err) != checkout.InvalidWebhookURL {
			t.Errorf("%s: %v, want INVALID_WEBHOOK_URL", u, err)
		}
		if err := dev.ValidateURL(context.Background(), u); err != nil {
			t.Errorf("with WEBHOOK_ALLOW_PRIVATE %s: %v", u, err)
		}
	}
	if err := strict.ValidateURL(context.Background(), "https://93.184.215.14/hooks"); err != nil {
		t.Errorf("public address refused: %v", err)
	}
	// At delivery the dialer checks the address it connects to.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("SSRF: the request reached the server") }))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{DialContext: strict.Dialer(time.Second).DialContext}}
	if _, err := client.Get(srv.URL); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("dial to loopback: %v", err)
	}
}

func TestPartnerWebhooks_ManyOrders_EveryEventDeliveredInOrder(t *testing.T) {
	t.Parallel()
	s := testutil.NewStack(t, testutil.StackOptions{Webhooks: true})
	s.Product(t, "PM", 100, map[string]int{"w": 100})
	rcv := &receiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	_, secret, err := newService(s, true).Register(context.Background(), admin, srv.URL, []string{"*"})
	if err != nil {
		t.Fatal(err)
	}
	rcv.mu.Lock()
	rcv.secret = secret
	rcv.mu.Unlock()
	// Each order's order.paid is fanned out while its order.placed is being delivered.
	for i := 0; i < 30; i++ {
		s.Checkout(t, fmt.Sprint("c", i), "k", "tok_visa", checkout.Line{SKU: "PM", Quantity: 1})
	}
	waitFor(t, "60 deliveries", func() bool { ok, _, _ := rcv.snapshot(); return len(ok) >= 60 })
	ok, _, bad := rcv.snapshot()
	if len(bad) > 0 {
		t.Fatalf("bad deliveries: %v", bad)
	}
	last := map[string]int{}
	for _, ev := range ok {
		if ev.Data.Order.Sequence != last[ev.Data.Order.ID]+1 {
			t.Fatalf("order %s: sequence %d after %d", ev.Data.Order.ID, ev.Data.Order.Sequence, last[ev.Data.Order.ID])
		}
		last[ev.Data.Order.ID] = ev.Data.Order.Sequence
	}
	// The receiver saw them before their attempts were recorded: wait for the records.
	waitFor(t, "every task recorded delivered", func() bool {
		return s.Count(t, "SELECT count(*) FROM webhook_tasks WHERE status <> 'DELIVERED'") == 0
	})
}
