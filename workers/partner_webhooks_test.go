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
	time.Sleep(300 * time.Millisecond)
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
	time.Sleep(300 * time.Millisecond)
	_, callsWhileDisabled, _ := rcv.snapshot()
	time.Sleep(300 * time.Millisecond)
	if _, calls, _ := rcv.snapshot(); calls != callsWhileDisabled || calls != 3 {
		t.Fatalf("%d calls after disable (was %d), want 3 and no more", calls, callsWhileDisabled)
	}

	// The partner fixes its endpoint; re-enabling replays both events, in order.
	rcv.mu.Lock()
	rcv.failures = 0
	rcv.mu.Unlock()
	if _, err := svc.Enable(context.Background(), admin, wh.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replay", func() bool { ok, _, _ := rcv.snapshot(); return len(ok) >= 2 })
	time.Sleep(200 * time.Millisecond)
	ok, _, bad := rcv.snapshot()
	if len(bad) > 0 || len(ok) != 2 || ok[0].Data.Order.Sequence != 1 || ok[1].Data.Order.Sequence != 2 {
		t.Fatalf("replayed %+v (bad %v)", ok, bad)
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
	time.Sleep(500 * time.Millisecond)
	if _, calls, _ := rcv.snapshot(); calls != 0 {
		t.Fatalf("%d deliveries to a deleted endpoint", calls)
	}
	if list, _ := svc.List(context.Background(), admin); len(list) != 0 {
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
