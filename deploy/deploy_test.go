// Package deploy_test checks the monitoring files under deploy/ against the real tools
// and the service's metrics: the alerting rules with `promtool test rules`, the
// Prometheus configuration with `promtool check config`, every metric the rules and the
// Grafana dashboard query against what internal/platform/metrics exports, and a real
// Prometheus scraping the metrics handler. promtool and prometheus must be on PATH
// (Debian/Ubuntu: apt-get install -y prometheus).
package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sony/gobreaker"

	"github.com/checkout-backend/checkout/internal/platform/metrics"
	"github.com/checkout-backend/checkout/internal/testutil"
)

const installHint = "install it with `apt-get install -y prometheus` (Debian/Ubuntu; the package ships promtool and prometheus) or from https://prometheus.io/download/"

func tool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not on PATH: %s", name, installHint)
	}
	return path
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(tool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func TestAlertRules_PromtoolUnitTests(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	run(t, "promtool", "test", "rules", "prometheus/alerts_test.yml")
}

func TestPrometheusConfig_IsValid(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	run(t, "promtool", "check", "config", "prometheus/prometheus.yml")
}

// fullMetrics is the registry as serve wires it, with every optional collector.
func fullMetrics(t *testing.T) *metrics.Metrics {
	m := metrics.New(metrics.Options{Breakers: []string{"payment-sandbox"}, Consumers: []string{"payment", "refund"}})
	m.OutboxBacklog(func(context.Context) (int, time.Duration, error) { return 7, 3 * time.Second, nil })
	m.Queues(func(context.Context) ([]metrics.QueueDepth, error) {
		return []metrics.QueueDepth{{Queue: "checkout.payment", Consumers: 1}, {Queue: "checkout.payment.dlq"}}, nil
	})
	m.InFlight("checkout", func() int { return 0 })
	m.ObserveGraphQL("products", metrics.OutcomeOK, time.Millisecond)
	m.Revenue("USD", 100)
	m.RelayBatch(1, time.Millisecond, []time.Duration{time.Millisecond})
	m.Consumer("payment", "ack", false, time.Millisecond)
	m.Shed("read", "busy")
	m.BreakerState("payment-sandbox", gobreaker.StateClosed)
	db := openLazyDB(t)
	m.DBStats(db, "checkout")
	return m
}

// exported lists the metric names a scrape of m shows, with a histogram's _bucket,
// _sum and _count.
func exported(t *testing.T, m *metrics.Metrics) map[string]bool {
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range fams {
		n := f.GetName()
		names[n] = true
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			names[n+s] = true
		}
	}
	return names
}

var metricName = regexp.MustCompile(`\b(?:checkout|graphql|go|process)_[a-z_]+\b`)

func TestDashboardAndAlerts_QueryOnlyExportedMetrics(t *testing.T) {
	t.Parallel()
	names := exported(t, fullMetrics(t))
	alerts, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]string{"alerts.yml": string(alerts)}

	b, err := os.ReadFile("grafana/dashboards/checkout.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string
		Panels []struct {
			Title      string
			Type       string
			Datasource struct{ UID string }
			Targets    []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("checkout.json: %v", err)
	}
	ds, err := os.ReadFile("grafana/provisioning/datasources/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if !strings.Contains(string(ds), "uid: "+p.Datasource.UID+"\n") {
			t.Errorf("panel %q uses datasource %q, which is not provisioned", p.Title, p.Datasource.UID)
		}
		for _, tg := range p.Targets {
			sources["panel "+p.Title] += tg.Expr + "\n"
		}
	}
	for where, text := range sources {
		for _, n := range metricName.FindAllString(text, -1) {
			if !names[n] {
				t.Errorf("%s queries %s, which /metrics does not export", where, n)
			}
		}
	}
	// The contract's series, present from start.
	for _, n := range []string{"graphql_request_duration_seconds_bucket", "checkout_orders_total", "checkout_outbox_backlog",
		"checkout_outbox_oldest_age_seconds", "checkout_circuit_breaker_state"} {
		if !names[n] {
			t.Errorf("%s is not exported", n)
		}
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startPrometheus runs the real prometheus binary scraping target every second, with
// the alerting rules loaded; it is stopped at cleanup.
func startPrometheus(t *testing.T, target string) (apiURL string) {
	bin := tool(t, "prometheus")
	dir := t.TempDir()
	rules, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.yml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: checkout
    static_configs:
      - targets: [%q]
`, filepath.Join(dir, "alerts.yml"), target)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("prometheus log:\n%s", b)
		}
	})
	return "http://" + addr
}

// query runs an instant query and returns its vector.
func query(apiURL, q string) ([]struct {
	Metric map[string]string
	Value  [2]any
}, error) {
	resp, err := http.Get(apiURL + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, b)
	}
	return r.Data.Result, nil
}

func TestPrometheus_ScrapesTheMetricsHandler(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	svc := httptest.NewServer(fullMetrics(t).Handler())
	defer svc.Close()
	api := startPrometheus(t, strings.TrimPrefix(svc.URL, "http://"))

	var (
		res []struct {
			Metric map[string]string
			Value  [2]any
		}
		err error
	)
	testutil.Within(45*time.Second, func() bool {
		res, err = query(api, "checkout_outbox_backlog")
		return err == nil && len(res) == 1
	})
	if err != nil || len(res) != 1 {
		t.Fatalf("Prometheus never had checkout_outbox_backlog: %v %v", res, err)
	}
	if res[0].Value[1] != "7" || res[0].Metric["job"] != "checkout" {
		t.Errorf("checkout_outbox_backlog = %v %v; want 7 from job checkout", res[0].Metric, res[0].Value[1])
	}
	for q, want := range map[string]string{
		`checkout_circuit_breaker_state{name="payment-sandbox"}`:                    "0",
		`checkout_orders_total{status="PAID"}`:                                      "0",
		`checkout_outbox_oldest_age_seconds`:                                        "3",
		`graphql_request_duration_seconds_count{operation="checkout",outcome="ok"}`: "0",
		`checkout_rabbitmq_queue_consumers{queue="checkout.payment"}`:               "1",
		`up{job="checkout"}`: "1",
		`count(ALERTS{alertname=~"CheckoutOutboxStuck|CheckoutCircuitBreakerOpen"}) or vector(0)`: "0",
	} {
		res, err := query(api, q)
		if err != nil || len(res) != 1 || res[0].Value[1] != want {
			t.Errorf("%s = %v (%v); want %s", q, res, err, want)
		}
	}
	resp, err := http.Get(api + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), `"name":"CheckoutOutboxStuck"`) || strings.Contains(string(b), `"health":"err"`) {
		t.Errorf("rules not loaded or failing: %s", b)
	}
}
