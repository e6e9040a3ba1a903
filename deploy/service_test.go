package deploy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clog "github.com/checkout-backend/checkout/internal/platform/log"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// service is the real checkout binary, run the way an operator runs it.
type service struct {
	url     string
	cmd     *exec.Cmd
	log     string
	done    chan struct{} // closed when the process has exited
	waitErr error         // its exit, once done is closed
}

// startService builds the checkout binary and runs `checkout serve` with env (a whole
// environment) plus a free HTTP_ADDR and an ANALYTICS_DIR of the test, its output in a
// log file; it returns once /readyz answers 200, and kills the process when the test ends.
func startService(t *testing.T, env []string) *service {
	t.Helper()
	bin := testutil.BuildCheckout(t)
	dir := t.TempDir()
	addr := freePort(t)
	s := &service{url: "http://" + addr, log: filepath.Join(dir, "service.log"), done: make(chan struct{})}
	logf, err := os.Create(s.log)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env = append(env, "HTTP_ADDR="+addr, "ANALYTICS_DIR="+filepath.Join(dir, "analytics"))
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.waitErr = s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		logf.Close()
	})
	testutil.Eventually(t, 30*time.Second, "the service ready", func() bool { return s.ready() == 200 })
	return s
}

func (s *service) gql(t *testing.T, token, query string, vars map[string]any) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	return out
}

func (s *service) ready() int {
	resp, err := http.Get(s.url + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func dig(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// TestRunningService is the service binary end to end: taking orders, paying them,
// delivering partner webhooks, scraped by a real Prometheus, readiness following its
// dependencies as they are cut and restored, and a log with no secret in it.
func TestRunningService(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	db := testutil.NewDB(t)
	pgProxy := testutil.NewProxy(t, testutil.PostgresHostPort(t))
	mqProxy := testutil.NewProxy(t, testutil.AMQPHostPort(t))
	dbURL, _ := url.Parse(db.URL)
	dbURL.Host = pgProxy.Addr()
	const stripeSecret = "whsec_e2e0123456789abcdef"
	s := startService(t, append(os.Environ(),
		"DATABASE_URL="+dbURL.String(), "AMQP_URL=amqp://guest:guest@"+mqProxy.Addr()+"/",
		"AMQP_PREFIX="+testutil.DeploymentPrefix(t), "JWT_SECRET="+testutil.Secret, "STRIPE_WEBHOOK_SECRET="+stripeSecret,
		"WEBHOOK_ALLOW_PRIVATE=true", "WEBHOOK_BACKOFF_BASE=100ms", "WORKER_RETRY_DELAYS=100ms,200ms",
		"SWEEP_INTERVAL=200ms", "OUTBOX_POLL_INTERVAL=200ms", "DB_MAX_CONNS=10", "REDIS_URL="))
	logPath := s.log

	admin := testutil.Token(t, "ops", "admin")
	alice := testutil.Token(t, "alice")
	s.gql(t, admin, `mutation { upsertProduct(input: {sku: "E2E", name: "E2E", priceCents: 2500, currency: "USD"}) { sku } }`, nil)
	s.gql(t, admin, `mutation { setStock(sku: "E2E", warehouse: "w", onHand: 100) { onHand } }`, nil)

	// A partner endpoint, verifying every delivery with the secret shown once.
	var mu sync.Mutex
	var delivered []string
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		delivered = append(delivered, r.Header.Get("Checkout-Signature")+"|"+string(body))
	}))
	defer receiver.Close()
	reg := s.gql(t, admin, `mutation($u: String!) { registerWebhook(input: {url: $u, events: ["*"]}) { secret webhook { id } } }`, map[string]any{"u": receiver.URL})
	whSecret, _ := dig(reg, "data", "registerWebhook", "secret").(string)
	if whSecret == "" {
		t.Fatalf("register webhook: %v", reg)
	}

	place := func(key, token string) map[string]any {
		return s.gql(t, alice, `mutation($in: CheckoutInput!) { checkout(input: $in) { order { id status } userErrors { code } } }`,
			map[string]any{"in": map[string]any{"idempotencyKey": key, "paymentToken": token, "items": []any{map[string]any{"sku": "E2E", "quantity": 1}}}})
	}
	status := func(id string) string {
		st, _ := dig(s.gql(t, alice, `query($id: ID!) { order(id: $id) { status } }`, map[string]any{"id": id}), "data", "order", "status").(string)
		return st
	}
	first, _ := dig(place("k1", "tok_visa"), "data", "checkout", "order", "id").(string)
	testutil.Eventually(t, 20*time.Second, "the first order PAID", func() bool { return status(first) == "PAID" })

	// Things that must never reach the log.
	if code := dig(place("k2", "4242 4242 4242 4242"), "data", "checkout", "userErrors"); !strings.Contains(fmt.Sprint(code), "INVALID_PAYMENT_TOKEN") {
		t.Fatalf("card number token: %v", code)
	}
	s.gql(t, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.forged-signature", `{ myOrders { edges { cursor } } }`, nil)
	req, _ := http.NewRequest(http.MethodPost, s.url+"/webhooks/stripe", strings.NewReader(`{"id":"evt_1","type":"payment_intent.succeeded"}`))
	req.Header.Set("Stripe-Signature", "t=1,v1=00")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Fatalf("stripe webhook with a bad signature: %v %v", resp, err)
	}

	// A real Prometheus scrapes the running service.
	api := startPrometheus(t, strings.TrimPrefix(s.url, "http://"))
	testutil.Eventually(t, 30*time.Second, "Prometheus to scrape a PAID order", func() bool {
		v, err := query(api, `checkout_orders_total{status="PAID"}`)
		return err == nil && len(v) == 1 && v[0].Value[1] != "0"
	})
	if v, err := query(api, `checkout_checkouts_total{outcome="placed"}`); err != nil || len(v) != 1 || v[0].Value[1] == "0" {
		t.Errorf("checkouts placed not counted: %v %v", v, err)
	}
	for _, q := range []string{"checkout_outbox_backlog", "checkout_outbox_oldest_age_seconds", `checkout_circuit_breaker_state{name="payment-sandbox"}`, "graphql_request_duration_seconds_count"} {
		if v, err := query(api, q); err != nil || len(v) == 0 {
			t.Errorf("Prometheus has no %s: %v", q, err)
		}
	}

	// Readiness follows PostgreSQL and RabbitMQ; the relay and workers come back by themselves.
	pgProxy.Cut()
	testutil.Eventually(t, 15*time.Second, "readyz to fail without PostgreSQL", func() bool { return s.ready() == 503 })
	pgProxy.Restore()
	testutil.Eventually(t, 15*time.Second, "readyz back with PostgreSQL", func() bool { return s.ready() == 200 })
	mqProxy.Cut()
	testutil.Eventually(t, 15*time.Second, "readyz to fail without RabbitMQ", func() bool { return s.ready() == 503 })
	during, _ := dig(place("k3", "tok_visa"), "data", "checkout", "order", "id").(string)
	if during == "" {
		t.Fatal("checkout failed while the broker was away")
	}
	mqProxy.Restore()
	testutil.Eventually(t, 15*time.Second, "readyz back with RabbitMQ", func() bool { return s.ready() == 200 })
	testutil.Eventually(t, 30*time.Second, "the order placed without a broker PAID", func() bool { return status(during) == "PAID" })

	// Partner deliveries are signed with the secret shown at registration.
	if !testutil.Within(20*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(delivered) >= 4 }) {
		b, _ := os.ReadFile(logPath)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "webhook") || strings.Contains(l, "WARN") || strings.Contains(l, "ERROR") {
				t.Log(l)
			}
		}
		var tasks []struct {
			EventType string `bun:"event_type"`
			Status    string `bun:"status"`
			Attempts  int    `bun:"attempts"`
		}
		db.NewRaw("SELECT event_type, status, attempts FROM webhook_tasks ORDER BY created_at").Scan(context.Background(), &tasks)
		var inbox []string
		db.NewRaw("SELECT consumer || ':' || event_id FROM inbox").Scan(context.Background(), &inbox)
		var ob []string
		db.NewRaw("SELECT type || ':' || (published_at IS NOT NULL)::text FROM outbox ORDER BY id").Scan(context.Background(), &ob)
		t.Fatalf("%d webhook deliveries, want 4; tasks %+v; inbox %v; outbox %v", len(delivered), tasks, inbox, ob)
	}
	mu.Lock()
	for _, d := range delivered {
		sig, body, _ := strings.Cut(d, "|")
		var ts, v1 string
		for _, p := range strings.Split(sig, ",") {
			k, v, _ := strings.Cut(p, "=")
			if k == "t" {
				ts = v
			} else if k == "v1" {
				v1 = v
			}
		}
		m := hmac.New(sha256.New, []byte(whSecret))
		m.Write([]byte(ts + "." + body))
		if _, err := strconv.Atoi(ts); err != nil || hex.EncodeToString(m.Sum(nil)) != v1 {
			t.Errorf("delivery signature does not verify: %s", sig)
		}
	}
	mu.Unlock()

	// Graceful shutdown.
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if s.waitErr != nil {
			t.Errorf("exit after SIGTERM: %v", s.waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}

	// The whole log: JSON lines only, and not one secret, token or card number.
	f, _ := os.Open(logPath)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	lines := 0
	forbidden := []string{alice, admin, testutil.Secret, whSecret, stripeSecret, "tok_visa", "forged-signature"}
	for sc.Scan() {
		line := sc.Text()
		lines++
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %.200s", line)
		}
		for _, f := range forbidden {
			if strings.Contains(line, f) {
				t.Errorf("log line holds a secret or token (%.12s...): %.200s", f, line)
			}
		}
		if found := clog.Sensitive(line); len(found) > 0 {
			t.Errorf("log line holds %v: %.200s", found, clog.Mask(line))
		}
	}
	if lines < 10 {
		t.Fatalf("only %d log lines", lines)
	}
	if b, err := os.ReadFile(logPath); err == nil {
		testutil.RunLog(b) // and into the log of the whole run, which make test scans
	}
	t.Logf("%d log lines checked", lines)
}
