package overload_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/overload"
)

// stalled starts a POST whose body sends its first bytes and then nothing until the
// returned function is called; the answer comes on the channel (status, or -1).
func stalled(client *http.Client, url, clientName string) (answer <-chan int, finish func()) {
	pr, pw := io.Pipe()
	ch := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, url, pr)
		req.Header.Set("X-Client", clientName)
		resp, err := client.Do(req)
		if err != nil {
			ch <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		ch <- resp.StatusCode
	}()
	go pw.Write([]byte(`{"query":"mutation { createCart { id } }",`))
	return ch, func() { pw.Close() }
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestH2_SlowBodiesOverHTTP2_RefusedAtTheDeadline_NoSlotHeld: the bodies of HTTP/2
// streams are read under the same deadline as HTTP/1 ones, with no slot of the shedder
// held meanwhile (finding H2): streams of one connection that stop sending their bodies
// are answered 408 at BodyOptions.Timeout while a whole request of the same class is
// served.
func TestH2_SlowBodiesOverHTTP2_RefusedAtTheDeadline_NoSlotHeld(t *testing.T) {
	t.Parallel()
	shed := newShedder(overload.Options{Limits: map[overload.Class]int{overload.Other: 1}, MaxWait: -1,
		Body: overload.BodyOptions{Timeout: 500 * time.Millisecond, PerClient: -1}})
	srv := httptest.NewUnstartedServer(shed.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	})))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()

	const streams = 3
	var answers []<-chan int
	for range streams {
		ch, finish := stalled(client, srv.URL, "slow")
		defer finish()
		answers = append(answers, ch)
	}
	waitFor(t, "the stalled bodies being read", func() bool { return shed.BodiesInFlight() == streams })
	resp, err := client.Post(srv.URL, "application/json", strings.NewReader(`{"query":"mutation { createCart { id } }"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("a whole request while %d bodies stall: %d over HTTP/%d", streams, resp.StatusCode, resp.ProtoMajor)
	}
	for i, ch := range answers {
		if got := <-ch; got != http.StatusRequestTimeout {
			t.Errorf("stalled stream %d: %d, want 408", i, got)
		}
	}
}

// TestBodiesPerClient_Bounded: one client has at most BodyOptions.PerClient bodies being
// read at once; over it 429 at once with Retry-After, while another client is served.
func TestBodiesPerClient_Bounded(t *testing.T) {
	t.Parallel()
	shed := newShedder(overload.Options{Body: overload.BodyOptions{Timeout: time.Minute, PerClient: 2},
		ClientKey: func(r *http.Request) string { return r.Header.Get("X-Client") }})
	srv := httptest.NewServer(shed.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	defer srv.Close()
	for range 2 {
		_, finish := stalled(srv.Client(), srv.URL, "slow")
		defer finish()
	}
	waitFor(t, "two stalled bodies", func() bool { return shed.BodiesInFlight() == 2 })
	post := func(clientName string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"query":"{ __typename }"}`))
		req.Header.Set("X-Client", clientName)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post("slow"); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a third body of the same client: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := post("other"); resp.StatusCode != http.StatusOK {
		t.Fatalf("another client: %d", resp.StatusCode)
	}
}

// TestReadBody_TooLargeAndBroken: a body over BodyOptions.MaxBytes is 413 and its
// client pays a token; bodies are in memory for the handler afterwards.
func TestReadBody_TooLargeAndBroken(t *testing.T) {
	t.Parallel()
	shed := newShedder(overload.Options{Rate: 0.001, Burst: 1, Body: overload.BodyOptions{MaxBytes: 10}})
	var got string
	h := shed.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
	}))
	if w := serve(h, post(strings.Repeat("x", 11))); w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("11 bytes over a limit of 10: %d", w.Code)
	}
	if w := serve(h, post("0123456789")); w.Code != http.StatusTooManyRequests {
		t.Fatalf("the refused body took no token: %d", w.Code)
	}
	shed = newShedder(overload.Options{Body: overload.BodyOptions{MaxBytes: 10}})
	h = shed.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
	}))
	if w := serve(h, post("0123456789")); w.Code != http.StatusOK || got != "0123456789" {
		t.Fatalf("10 bytes: %d %q", w.Code, got)
	}
}
