package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/redis/go-redis/v9"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/platform/tlsx"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// devEnv runs `checkout certs dev` and returns the variables of its export lines.
func devEnv(t *testing.T, bin string, args ...string) (map[string]string, string) {
	t.Helper()
	var out, log bytes.Buffer
	cmd := exec.Command(bin, append([]string{"certs", "dev"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &log
	if err := cmd.Run(); err != nil {
		t.Fatalf("checkout certs dev: %v: %s", err, log.String())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "export ")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = strings.Trim(v, "'")
	}
	return env, log.String()
}

// tlsClient trusts the development CA and presents cert (nil: no certificate).
type tlsClient struct {
	http *http.Client
	cfg  *tls.Config
}

func newTLSClient(t *testing.T, caFile string, cert *tls.Certificate) *tlsClient {
	t.Helper()
	roots, err := tlsx.LoadPool(caFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{RootCAs: roots}
	if cert != nil {
		c := *cert
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &tlsClient{http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, cfg: cfg}
}

type gqlResult struct {
	Data   map[string]any `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
	proto int
}

func (r gqlResult) code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

func (c *tlsClient) gql(t *testing.T, url, token, query string, vars map[string]any, ext map[string]any) gqlResult {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars, "extensions": ext})
	req, _ := http.NewRequest(http.MethodPost, url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r gqlResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("POST /graphql (%d): %v: %s", resp.StatusCode, err, b)
	}
	r.proto = resp.ProtoMajor
	return r
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

func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := node.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// TestServe_EverythingOverMutualTLS runs the service binary as an operator would, with
// the certificates of `checkout certs dev`: HTTPS with required client certificates on
// both listeners, PostgreSQL (verify-full, client certificate), RabbitMQ (amqps, client
// certificate) and Redis (rediss, client certificate) each a private node of the test
// that accepts nothing else. It checks that a client without a certificate gets no
// handshake, HTTP/2, the partner certificate's identity (reads any order, subscribes
// over wss without a token), the saga over amqps, persisted queries stored in Redis
// over TLS, and a rotated server certificate served on the next handshake.
func TestServe_EverythingOverMutualTLS(t *testing.T) {
	testutil.Slow(t) // a private RabbitMQ or PostgreSQL node of its own
	t.Parallel()
	dir := t.TempDir()
	bin := testutil.BuildCheckout(t)
	certDir := filepath.Join(dir, "tls")
	// The client certificate's CN is the PostgreSQL user (pg_hba clientcert=verify-full).
	env, _ := devEnv(t, bin, "--dir", certDir, "--client-cn", "postgres")
	for _, k := range []string{"TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE", "TLS_CLIENT_AUTH", "TLS_PARTNER_CLIENTS"} {
		if env[k] == "" {
			t.Fatalf("checkout certs dev printed no %s: %v", k, env)
		}
	}
	caPEM, _ := os.ReadFile(filepath.Join(certDir, "ca.crt"))
	if _, log := devEnv(t, bin, "--dir", certDir, "--client-cn", "postgres"); !strings.Contains(log, "kept server") {
		t.Fatalf("a second run made new certificates: %s", log)
	}
	if again, _ := os.ReadFile(filepath.Join(certDir, "ca.crt")); !bytes.Equal(again, caPEM) {
		t.Fatal("a second run replaced the CA")
	}
	f := devFiles(certDir)
	pair := func(cert, key string) *tls.Certificate {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}

	// The dependencies, each requiring TLS and a client certificate of the CA.
	pg := node.StartPostgres(t, node.PostgresOptions{TLS: &node.PostgresTLS{CertFile: f.Server, KeyFile: f.ServerKey, ClientCAFile: f.CA, ClientCert: "verify-full"}})
	mq := node.StartRabbit(t, node.RabbitOptions{TLS: &node.RabbitTLS{CertFile: f.Server, KeyFile: f.ServerKey, CAFile: f.CA, Only: true}})
	rd := node.StartRedisTLS(t, node.RedisTLS{CertFile: f.Server, KeyFile: f.ServerKey, CAFile: f.CA, ProbeCert: f.Client, ProbeKey: f.ClientKey})

	addr, metricsAddr := freeAddr(t), freeAddr(t)
	logPath := filepath.Join(dir, "service.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--migrate")
	cmd.Env = append(os.Environ(),
		"APP_ENV=development", "HTTP_ADDR="+addr, "METRICS_ADDR="+metricsAddr, "JWT_SECRET="+testutil.Secret,
		"TLS_CERT_FILE="+env["TLS_CERT_FILE"], "TLS_KEY_FILE="+env["TLS_KEY_FILE"], "TLS_CLIENT_CA_FILE="+env["TLS_CLIENT_CA_FILE"],
		"TLS_CLIENT_AUTH=require", "TLS_PARTNER_CLIENTS="+env["TLS_PARTNER_CLIENTS"],
		fmt.Sprintf("DATABASE_URL=postgres://postgres@localhost:%d/postgres?sslmode=verify-full&sslrootcert=%s&sslcert=%s&sslkey=%s", pg.Port, f.CA, f.Client, f.ClientKey),
		fmt.Sprintf("AMQP_URL=amqps://guest:guest@localhost:%d/", mq.TLSPort), "AMQP_PREFIX=",
		"AMQP_TLS_CA_FILE="+f.CA, "AMQP_TLS_CERT_FILE="+f.Client, "AMQP_TLS_KEY_FILE="+f.ClientKey,
		"REDIS_URL="+rd.URL(), "REDIS_TLS_CA_FILE="+f.CA, "REDIS_TLS_CERT_FILE="+f.Client, "REDIS_TLS_KEY_FILE="+f.ClientKey,
		"PERSISTED_QUERIES=allow", "OUTBOX_POLL_INTERVAL=200ms", "SWEEP_INTERVAL=1s", "DB_MAX_CONNS=10", "PAYMENT_PROVIDER=sandbox")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("service log:\n%s", b)
		}
	})

	url := "https://" + addr
	partner := newTLSClient(t, f.CA, pair(f.Partner, f.PartnerKey))
	customer := newTLSClient(t, f.CA, pair(f.Client, f.ClientKey)) // a certificate of the CA that names no partner
	anonymous := newTLSClient(t, f.CA, nil)

	// Ready: database, broker (both over TLS) answer.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for {
		resp, err := partner.http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				if resp.ProtoMajor != 2 {
					t.Fatalf("readyz answered over HTTP/%d, want HTTP/2 (ALPN h2)", resp.ProtoMajor)
				}
				break
			}
		}
		select {
		case <-exited:
			t.Fatal("the service exited before it was ready")
		case <-ctx.Done():
			t.Fatalf("the service never became ready: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}

	// No client certificate, no handshake (on both listeners); plain HTTP gets nothing either.
	for _, a := range []string{addr, metricsAddr} {
		if resp, err := anonymous.http.Get("https://" + a + "/healthz"); err == nil {
			resp.Body.Close()
			t.Errorf("%s without a client certificate answered %d", a, resp.StatusCode)
		}
		if resp, err := http.Get("http://" + a + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("plain HTTP on %s answered %d", a, resp.StatusCode)
			}
		}
	}
	resp, err := partner.http.Get("https://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics over HTTPS: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}

	// A customer places an order (JWT over mutual TLS); the saga pays it over amqps.
	admin, buyer := testutil.Token(t, "tls-admin", "admin"), testutil.Token(t, "tls-buyer")
	if r := customer.gql(t, url, admin, `mutation { upsertProduct(input: {sku: "TLS-1", name: "Over TLS", priceCents: 500, currency: "USD"}) { sku } setStock(sku: "TLS-1", warehouse: "main", onHand: 5) { available } }`, nil, nil); len(r.Errors) > 0 {
		t.Fatalf("seed: %+v", r.Errors)
	}
	r := customer.gql(t, url, buyer, `mutation($k: String!) { checkout(input: {idempotencyKey: $k, paymentToken: "tok_visa", items: [{sku: "TLS-1", quantity: 1}]}) { order { id status } userErrors { code } } }`,
		map[string]any{"k": "tls-" + testutil.RandomID(4)}, nil)
	orderID, _ := dig(r.Data, "checkout", "order", "id").(string)
	if orderID == "" || r.proto != 2 {
		t.Fatalf("checkout over HTTP/%d: %+v %+v", r.proto, r.Data, r.Errors)
	}

	// The partner, known by its certificate alone, reads the customer's order; a
	// certificate that names no partner authenticates nobody.
	if r := partner.gql(t, url, "", `query($id: ID!) { order(id: $id) { id } }`, map[string]any{"id": orderID}, nil); dig(r.Data, "order", "id") != orderID {
		t.Fatalf("partner by certificate: %+v %+v", r.Data, r.Errors)
	}
	if r := customer.gql(t, url, "", `query($id: ID!) { order(id: $id) { id } }`, map[string]any{"id": orderID}, nil); r.code() != "UNAUTHENTICATED" {
		t.Fatalf("an unlisted certificate without a token: %+v %+v, want UNAUTHENTICATED", r.Data, r.Errors)
	}

	// The partner subscribes over wss with no token: it sees the order paid, then shipped.
	wsHTTP := &http.Client{Transport: &http.Transport{TLSClientConfig: partner.cfg.Clone()}}
	conn, _, err := websocket.Dial(ctx, "wss://"+addr+"/graphql", &websocket.DialOptions{Subprotocols: []string{"graphql-transport-ws"}, HTTPClient: wsHTTP})
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer conn.CloseNow()
	ws := &testutil.WSClient{Conn: conn}
	if err := wsjson.Write(ctx, conn, map[string]any{"type": "connection_init", "payload": map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	if m, err := ws.Next(ctx); err != nil || m.Type != "connection_ack" {
		t.Fatalf("connection_init with a partner certificate and no token: %+v, %v (close %d)", m, err, websocket.CloseStatus(err))
	}
	if err := ws.Subscribe(ctx, "1", `subscription($id: ID!) { orderStatusChanged(orderId: $id) { id status } }`, map[string]any{"id": orderID}); err != nil {
		t.Fatal(err)
	}
	waitStatus := func(want string) {
		t.Helper()
		for {
			m, err := ws.Next(ctx)
			if err != nil {
				t.Fatalf("waiting for %s: %v", want, err)
			}
			if m.Type != "next" {
				t.Fatalf("waiting for %s: %s %s", want, m.Type, m.Payload)
			}
			var p struct {
				Data struct {
					OrderStatusChanged struct{ Status string } `json:"orderStatusChanged"`
				} `json:"data"`
			}
			json.Unmarshal(m.Payload, &p)
			if p.Data.OrderStatusChanged.Status == want {
				return
			}
		}
	}
	waitStatus("PAID")
	if r := customer.gql(t, url, admin, `mutation($id: ID!) { shipOrder(id: $id, trackingNumber: "TLS-TRACK") { order { status } userErrors { code } } }`,
		map[string]any{"id": orderID}, nil); dig(r.Data, "shipOrder", "order", "status") != "SHIPPED" {
		t.Fatalf("ship: %+v %+v", r.Data, r.Errors)
	}
	waitStatus("SHIPPED")

	// An automatic persisted query is stored in Redis, over TLS with a client certificate.
	query := `query { products(first: 1) { edges { node { sku } } } }`
	sum := sha256.Sum256([]byte(query))
	hash := hex.EncodeToString(sum[:])
	if r := customer.gql(t, url, "", query, nil, map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hash}}); len(r.Errors) > 0 {
		t.Fatalf("APQ: %+v", r.Errors)
	}
	ropt, err := tlsx.RedisOptions(rd.URL(), tlsx.Files{CA: f.CA, Cert: f.Client, Key: f.ClientKey}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(ropt)
	defer rdb.Close()
	if stored, err := rdb.Get(ctx, "checkout:apq:"+hash).Result(); err != nil || stored != query {
		t.Fatalf("APQ text in Redis: %q, %v", stored, err)
	}

	// Rotation: a new server certificate written over the files is served on the next
	// handshake, with no restart.
	ca, err := tlsx.LoadCA(f.CA, f.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	next, err := ca.Issue(tlsx.Leaf{CommonName: "localhost", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := next.WriteFiles(f.Server, f.ServerKey); err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", addr, partner.cfg.Clone())
	if err != nil {
		t.Fatalf("handshake after rotation: %v", err)
	}
	served := c.ConnectionState().PeerCertificates[0]
	c.Close()
	if served.SerialNumber.Cmp(next.Cert.SerialNumber) != 0 {
		t.Fatalf("after rotation the service presents serial %s, want the new %s", served.SerialNumber, next.Cert.SerialNumber)
	}
	if _, err := served.Verify(x509.VerifyOptions{Roots: partner.cfg.RootCAs, DNSName: "localhost"}); err != nil {
		t.Fatal(err)
	}
	if r := partner.gql(t, url, "", `{ __typename }`, nil, nil); len(r.Errors) > 0 {
		t.Fatalf("a request after rotation: %+v", r.Errors)
	}
}
