package graph_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/graph/gqlhttp"
	"github.com/checkout-backend/checkout/internal/platform/overload"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// slowPost opens a POST /graphql on a connection of its own whose body is larger than
// the classifier's first look (64 KiB of it is sent at once) and then comes one byte at a
// time, and returns the connection; stop ends the dribble.
func slowPost(t *testing.T, addr string, stop <-chan struct{}) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	const total = 200 << 10
	head := `{"query":"mutation { createCart { id } }","variables":{"pad":"` + strings.Repeat("x", 70<<10)
	fmt.Fprintf(conn, "POST /graphql HTTP/1.1\r\nHost: checkout\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", total, head)
	go func() {
		for range total - len(head) {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond): // the slow client's pace
			}
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	return conn
}

// TestH2_SlowBodiesHoldNoBulkheadSlot: request bodies are read whole, under
// HTTP_BODY_TIMEOUT, before the shedder takes a slot (finding H2): slow POSTs that
// dribble their bodies do not fill the "other" class, another customer's createCart is
// served while they are open, and the slow ones are answered 408 REQUEST_TIMEOUT at
// the deadline.
func TestH2_SlowBodiesHoldNoBulkheadSlot(t *testing.T) {
	t.Parallel()
	const slow, limit = 32, 32 // OTHER_CONCURRENCY's default
	shed := overload.New(overload.Options{
		Limits: map[overload.Class]int{overload.Other: limit},
		// The slow posts all come from one address: this test is about slots, the bound
		// per client has its own.
		Body:     overload.BodyOptions{Timeout: 3 * time.Second, PerClient: -1},
		Classify: gqlhttp.Classify(nil),
		Reject:   gqlhttp.Refuse,
	})
	api := testutil.NewAPI(t, testutil.NewDB(t), testutil.APIOptions{Overload: shed.Middleware})
	srv := httptest.NewServer(api.Handler)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	stop := make(chan struct{})
	conns := make([]net.Conn, slow)
	defer func() {
		close(stop)
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range conns {
		conns[i] = slowPost(t, addr, stop)
	}
	testutil.Eventually(t, 10*time.Second, "the slow posts in the shedder", func() bool {
		return shed.InFlight(overload.Other)+shed.BodiesInFlight() == slow
	})

	// Another customer's cart edits while the slow bodies are open.
	tok := testutil.Token(t, "shopper")
	refused := 0
	for range 20 {
		r, err := api.Post(tok, `mutation { createCart { id } }`, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == http.StatusServiceUnavailable {
			refused++
		}
	}
	t.Logf("%d of 20 createCart answered 503 while %d slow posts were open (other class limit %d)", refused, slow, limit)
	if refused > 0 {
		t.Errorf("%d of 20 createCart answered 503 while %d slow bodies were open", refused, slow)
	}

	// The slow ones are refused at the deadline, as GraphQL errors.
	for i, conn := range conns {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a guard: the answer comes at HTTP_BODY_TIMEOUT
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("slow post %d: no answer: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		var body struct {
			Errors []struct {
				Extensions map[string]any `json:"extensions"`
			} `json:"errors"`
		}
		json.Unmarshal(b, &body)
		if resp.StatusCode != http.StatusRequestTimeout || len(body.Errors) != 1 || body.Errors[0].Extensions["code"] != gqlhttp.CodeRequestTimeout {
			t.Fatalf("slow post %d: %d %s, want 408 %s", i, resp.StatusCode, b, gqlhttp.CodeRequestTimeout)
		}
	}
}

// TestM1_ShedderAndGqlgenReadTheSameOperation: member names of a request body are exact
// (finding M1). A case variant of operationName beside a documentId made the shedder
// classify a subscription (no bulkhead) while gqlgen ran the mutation; such a body,
// and one with a member twice, is now refused 400 BAD_REQUEST before anything runs,
// and the classifier, which reads the body as the transport does, does not call it a
// subscription.
func TestM1_ShedderAndGqlgenReadTheSameOperation(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	tok := testutil.Token(t, "m1-shopper")
	query := `subscription S { orderStatusChanged(orderId: "x") { id } } mutation M { createCart { id } }`
	for name, body := range map[string]string{
		"reviewer's body": `{"query":` + quote(query) + `,"operationName":"M","OperationName":"S","documentId":"sha256:` + sha256Hex(query) + `"}`,
		"case variant":    `{"query":` + quote(query) + `,"operationName":"M","OperationName":"S"}`,
		"member twice":    `{"query":` + quote(query) + `,"operationName":"S","operationName":"M"}`,
		"extensions case": `{"extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + sha256Hex(query) + `"},"PersistedQuery":{}}}`,
	} {
		if c, _ := gqlhttp.Classify(nil)(withHeaders(httptest.NewRequest(http.MethodPost, "/graphql", strings.NewReader(body)), "Content-Type", mediaJSON)); c == overload.Stream {
			t.Errorf("%s: classified %s", name, c)
		}
		for _, accept := range []string{mediaGR, mediaJSON} {
			r := postRaw(t, api.Handler, body, "Accept", accept, "Authorization", "Bearer "+tok)
			if r.Status != http.StatusBadRequest || r.Code() != gqlhttp.CodeBadRequest || r.HasData {
				t.Errorf("%s, Accept %s: %d %s, want 400 %s", name, accept, r.Status, r.Body, gqlhttp.CodeBadRequest)
			}
		}
	}
	if n := api.Count(t, "SELECT count(*) FROM carts"); n != 0 {
		t.Fatalf("%d carts created by refused bodies", n)
	}
	// Exact names still work, documentId included.
	q := `mutation M { createCart { id } }`
	r := postRaw(t, api.Handler, `{"query":`+quote(q)+`,"operationName":"M","documentId":"sha256:`+sha256Hex(q)+`"}`, "Authorization", "Bearer "+tok)
	if r.Status != http.StatusOK || len(r.Errors) > 0 || !strings.Contains(string(r.Data), `"createCart"`) {
		t.Fatalf("exact body: %d %s", r.Status, r.Body)
	}
}

// TestL2_MalformedMemberIsNeverEchoed: a body with a case-variant member ("Variables")
// passed the transport's checks, failed gqlgen's decoding and came back whole in the
// error (finding L2); it is a 400 BAD_REQUEST that quotes nothing of the body.
func TestL2_MalformedMemberIsNeverEchoed(t *testing.T) {
	t.Parallel()
	api := newTransportAPI(t)
	const secret = "4242424242424242"
	for _, body := range []string{
		`{"query":"query($v: String) { __typename }","Variables":"` + secret + `"}`,
		`{"query":"{ __typename }","variables":{"card":"` + secret + `"},"Variables":{"card":"` + secret + `"}}`,
		`{"query":"{ __typename }","extensions":{"note":"` + secret + `","Note":1,"note":2}}`,
	} {
		for _, accept := range []string{mediaGR, mediaJSON} {
			r := postRaw(t, api.Handler, body, "Accept", accept)
			if r.Status != http.StatusBadRequest || r.Code() != gqlhttp.CodeBadRequest || r.HasData {
				t.Errorf("Accept %s: %d %s, want 400 %s without data", accept, r.Status, r.Body, gqlhttp.CodeBadRequest)
			}
			if strings.Contains(r.Body, secret) || strings.Contains(r.Body, "__typename") {
				t.Errorf("Accept %s: the body is echoed: %s", accept, r.Body)
			}
		}
	}
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }
