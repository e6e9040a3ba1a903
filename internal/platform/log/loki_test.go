package log_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/checkout-backend/checkout/internal/platform/httpx"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// logServer is a real log server taking Loki's push protocol, started for one test.
// Debian's `loki` package is not Grafana Loki (it is a genetics program) and Grafana
// Loki's Go module is AGPL, so the test runs VictoriaLogs (Apache-2.0), the tool pinned
// in tools/victorialogs (built once, then taken from the build cache by `go tool -n`,
// with no link step per run): it serves Loki's push API under /insert and
// answers LogsQL queries, whose `{service="checkout"} | unpack_json | correlationId:="..."`
// is the LogsQL twin of the LogQL query in the README.
type logServer struct {
	base string // push base: LOKI_URL
	root string
}

func startLogServer(t *testing.T) *logServer {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	toolDir := filepath.Join(filepath.Dir(strings.TrimSpace(string(gomod))), "tools", "victorialogs")
	dir := t.TempDir()
	build := exec.Command("go", "tool", "-n", "github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs")
	build.Dir = toolDir
	var stderr bytes.Buffer
	build.Stderr = &stderr
	out, err := build.Output()
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("skipping: cannot build the VictoriaLogs server from tools/victorialogs: %v", firstLine(stderr.Bytes()))
		}
		t.Fatalf("build VictoriaLogs (tools/victorialogs): %v\n%s", err, stderr.String())
	}
	bin := strings.TrimSpace(string(out))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "-httpListenAddr="+addr, "-storageDataPath="+filepath.Join(dir, "data"), "-loggerLevel=ERROR",
		"-retentionPeriod=1d")
	stderr.Reset()
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill() // by its own pid
		<-exited
	})
	s := &logServer{base: "http://" + addr + "/insert", root: "http://" + addr}
	deadline := time.After(60 * time.Second)
	for {
		resp, err := http.Get(s.root + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s
			}
		}
		select {
		case <-exited:
			t.Fatalf("VictoriaLogs exited: %s", stderr.String())
		case <-deadline:
			t.Fatalf("VictoriaLogs not ready after 60s: %v %s", err, stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return s
}

// query runs a LogsQL query and returns the matching entries.
func (s *logServer) query(t *testing.T, q string) []map[string]string {
	t.Helper()
	resp, err := http.PostForm(s.root+"/select/logsql/query", url.Values{"query": {q}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("query %s: %s: %s", q, resp.Status, b)
	}
	var out []map[string]string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var m map[string]string
		if err := json.Unmarshal(sc.Bytes(), &m); err == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestLoki_LinesFoundByCorrelationID ships the service's request log through the Loki
// push protocol to a real log server and finds the request's lines by correlation id,
// with only the low-cardinality labels (service, level, operation) as stream labels and
// nothing secret in them.
func TestLoki_LinesFoundByCorrelationID(t *testing.T) {
	testutil.Slow(t) // it builds and starts VictoriaLogs
	t.Parallel()
	srv := startLogServer(t)
	loki, err := clog.NewLoki(clog.LokiOptions{URL: srv.base, FlushInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go loki.Run(context.Background())
	var stdout bytes.Buffer
	logger := slog.New(clog.Tee(clog.New(&stdout, slog.LevelInfo).Handler(), loki.Handler()))

	// A request as the service serves it: the correlation id from X-Request-ID, the
	// operation named by the GraphQL layer, a handler logging on the way.
	id := "req-" + uuid.NewString()
	h := httpx.RequestID(httpx.Log(logger, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.SetOperation(r.Context(), "PlaceOrder")
		logger.InfoContext(r.Context(), "checkout placed", "orderId", "o-1", "paymentToken", "tok_visa_4242")
		logger.WarnContext(r.Context(), "payment slow", "orderId", "o-1")
	})))
	req := httptest.NewRequest("POST", "/graphql", nil)
	req.Header.Set("X-Request-ID", id)
	h.ServeHTTP(httptest.NewRecorder(), req)
	logger.Info("unrelated line")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := loki.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if loki.Shipped() != 4 || loki.Dropped() != 0 {
		t.Fatalf("shipped %d, dropped %d; want 4 and 0", loki.Shipped(), loki.Dropped())
	}

	q := fmt.Sprintf(`{service="checkout"} | unpack_json | correlationId:=%q`, id)
	var got []map[string]string
	deadline := time.After(30 * time.Second)
	for len(got) < 3 { // the server makes pushed lines searchable within about a second
		got = srv.query(t, q)
		select {
		case <-deadline:
			t.Fatalf("found %d lines by correlation id, want 3: %v", len(got), got)
		case <-time.After(100 * time.Millisecond):
		}
	}
	msgs := map[string]map[string]string{}
	for _, e := range got {
		msgs[e["msg"]] = e
		for k, v := range e {
			if strings.HasPrefix(k, "_") {
				continue // the server's own fields (its stream id is a long digit run)
			}
			if s := clog.Sensitive(v); len(s) > 0 {
				t.Errorf("a shipped line holds %v in %s: %v", s, k, e)
			}
		}
	}
	for _, c := range []struct{ msg, stream string }{
		{"checkout placed", `{level="info",service="checkout"}`},
		{"payment slow", `{level="warn",service="checkout"}`},
		{"request", `{level="info",operation="PlaceOrder",service="checkout"}`},
	} {
		e, ok := msgs[c.msg]
		if !ok {
			t.Errorf("line %q not found by correlation id; got %v", c.msg, got)
			continue
		}
		if e["_stream"] != c.stream {
			t.Errorf("line %q in stream %s, want %s (labels: service, level, operation only)", c.msg, e["_stream"], c.stream)
		}
	}
	// The stdout log is unchanged: every line there too.
	if n := strings.Count(stdout.String(), "\n"); n != 4 {
		t.Errorf("%d lines on stdout, want 4", n)
	}
}

// TestLoki_DownOrHanging_LoggingNeverBlocks: with Loki accepting connections but never
// answering, logging goes on at full speed; what cannot be held is dropped and counted.
func TestLoki_DownOrHanging_LoggingNeverBlocks(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn, 100)
	go func() { // accept and hold every connection, never answer
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		close(conns)
		for c := range conns {
			c.Close()
		}
	})
	loki, err := clog.NewLoki(clog.LokiOptions{URL: "http://" + l.Addr().String(), Buffer: 100, BatchLines: 10,
		FlushInterval: 10 * time.Millisecond, Timeout: time.Hour, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	go loki.Run(context.Background())
	logger := slog.New(clog.Tee(clog.New(io.Discard, slog.LevelInfo).Handler(), loki.Handler()))
	const lines = 5000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range lines {
			logger.Info("line", "i", i)
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("logging blocked on a hanging Loki")
	}
	// At most the buffer and one batch in flight are held; the rest was dropped.
	if d := loki.Dropped(); d < lines-100-10 || loki.Shipped() != 0 {
		t.Fatalf("dropped %d, shipped %d of %d lines; want at least %d dropped", d, loki.Shipped(), lines, lines-110)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	loki.Close(ctx) // gives up when ctx ends: shutdown is not held by Loki either
}
