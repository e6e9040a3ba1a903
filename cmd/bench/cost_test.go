package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// The /proc times are clock ticks: 1,800 of them are 18 s of CPU.
func TestTicksToMillis(t *testing.T) {
	if ms := ticksToMillis(1800); ms != 18000 {
		t.Fatalf("1800 ticks = %v ms", ms)
	}
}

func snapshot(at time.Time, paid int, values map[string]float64, missing map[string]string) costSnapshot {
	s := costSnapshot{at: at, paid: paid, values: values, missing: missing}
	if s.missing == nil {
		s.missing = map[string]string{}
	}
	return s
}

func TestCostBetweenPerOrder(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	before := snapshot(t0, 100, map[string]float64{
		cWALSyncs: 1000, cWALBytes: 1 << 20, cCommits: 500, cPublished: 10, cDelivered: 20,
		cServiceCPU: 100, cPostgreCPU: 200, cRabbitCPU: 300,
	}, map[string]string{})
	after := snapshot(t0.Add(10*time.Second), 300, map[string]float64{
		cWALSyncs: 1400, cWALBytes: 1<<20 + 200*4096, cCommits: 2515, cPublished: 410, cDelivered: 1420,
		cServiceCPU: 500, cPostgreCPU: 1000, cRabbitCPU: 400,
	}, map[string]string{})
	w := costBetween(before, after, 15, after.paid-before.paid)
	if w.elapsed != 10*time.Second || w.paid != 200 || len(w.missing) != 0 {
		t.Fatalf("window %+v", w)
	}
	want := map[string]float64{cWALSyncs: 2, cWALBytes: 4096, cCommits: 10, cPublished: 2, cDelivered: 7, cServiceCPU: 2, cPostgreCPU: 4, cRabbitCPU: 0.5}
	for name, v := range want {
		if got, ok := w.perOrder(name); !ok || got != v {
			t.Errorf("%s per order = %v (%v), want %v", name, got, ok, v)
		}
	}
	cells := w.perOrderCells()
	if strings.Join(cells, " ") != "2.00 4.0 10.0 2.0 7.0 2.00 4.00 0.50 6.50" {
		t.Errorf("cells %q", cells)
	}
	if txt := w.perOrderText(); !strings.Contains(txt, "WAL flushes 2.00, WAL KiB 4.0, commits 10.0") || !strings.HasSuffix(txt, "CPU ms all 6.50") {
		t.Errorf("text %q", txt)
	}

	// A counter missing on one side, one that went backwards, no paid order.
	delete(after.values, cPublished)
	after.missing[cPublished] = "no RabbitMQ counters readable here"
	after.values[cRabbitCPU] = 1
	w = costBetween(before, after, 0, 0)
	if w.missing[cPublished] != "no RabbitMQ counters readable here" || !strings.Contains(w.missing[cRabbitCPU], "backwards") {
		t.Errorf("missing %v", w.missing)
	}
	if _, ok := w.perOrder(cWALSyncs); ok {
		t.Error("a per-order figure with no paid order")
	}
	for _, c := range w.perOrderCells() {
		if c != "n/a" {
			t.Errorf("cells with no paid order: %q", w.perOrderCells())
			break
		}
	}
	if txt := w.totalsText(); !strings.Contains(txt, "WAL flushes 400") || !strings.Contains(txt, "msgs published n/a") || !strings.Contains(txt, "commits 2015") {
		t.Errorf("totals %q", txt)
	}
	// The bench's own commits never make the figure negative.
	if w := costBetween(before, before, 50, 1); w.totals[cCommits] != 0 {
		t.Errorf("commits %v", w.totals[cCommits])
	}
}

func TestBrokerCounterParsers(t *testing.T) {
	// `rabbitmqctl eval` prints the io:format line, then the expression's value.
	p, d, err := parseRabbitmqctlEval([]byte("received 9732 delivered 8981\nok\n"))
	if err != nil || p != 9732 || d != 8981 {
		t.Fatalf("rabbitmqctl: %v %v %v", p, d, err)
	}
	if _, _, err := parseRabbitmqctlEval([]byte("Error: unable to perform an operation on node 'rabbit@localhost'\n")); err == nil {
		t.Error("rabbitmqctl error output parsed")
	}

	overview := `{"management_version":"3.10.8","rabbitmq_version":"3.10.8","message_stats":{"publish":1234,"publish_details":{"rate":5.0},
		"deliver_get":4567,"deliver_get_details":{"rate":1.0},"confirm":1230},"queue_totals":{"messages":3}}`
	if p, d, err := parseManagementOverview([]byte(overview)); err != nil || p != 1234 || d != 4567 {
		t.Fatalf("management: %v %v %v", p, d, err)
	}
	if p, d, err := parseManagementOverview([]byte(`{"rabbitmq_version":"3.10.8"}`)); err != nil || p != 0 || d != 0 {
		t.Fatalf("management, no message yet: %v %v %v", p, d, err)
	}
	if _, _, err := parseManagementOverview([]byte(`{"error":"not_authorised"}`)); err == nil {
		t.Error("an error body parsed as an overview")
	}

	metrics := `# TYPE rabbitmq_global_messages_received_total counter
# HELP rabbitmq_global_messages_received_total Total number of messages received from publishers
rabbitmq_global_messages_received_total{protocol="amqp091"} 9732
rabbitmq_global_messages_received_total{protocol="amqp10"} 8
rabbitmq_global_messages_delivered_total{protocol="amqp091",queue_type="rabbit_classic_queue"} 1643
rabbitmq_global_messages_delivered_total{protocol="amqp091",queue_type="rabbit_quorum_queue"} 7338
rabbitmq_global_messages_delivered_total{protocol="amqp091",queue_type="rabbit_stream_queue"} 0
rabbitmq_global_messages_routed_total{protocol="amqp091"} 9840
`
	if p, d, err := parsePrometheusGlobal([]byte(metrics)); err != nil || p != 9740 || d != 8981 {
		t.Fatalf("prometheus: %v %v %v", p, d, err)
	}
	if _, _, err := parsePrometheusGlobal([]byte("rabbitmq_queues 3\n")); err == nil {
		t.Error("metrics without the global counters parsed")
	}
}

func TestPrintCostTable(t *testing.T) {
	w := costWindow{elapsed: 5 * time.Second, paid: 100, totals: map[string]float64{cWALSyncs: 400, cCommits: 900},
		missing: map[string]string{cPublished: "no RabbitMQ counters readable here"}}
	run := &strategyRun{strategy: "batch", costFrom: "somewhere", idle: &costWindow{elapsed: 8 * time.Second, totals: map[string]float64{cWALSyncs: 3}},
		hot: []hotRow{{strategy: "batch", inFlight: 1, stats: &loadStats{Placed: 100, Elapsed: 2 * time.Second}, cost: w}}}
	var b bytes.Buffer
	printCostTable(&b, 100, []*strategyRun{run})
	out := b.String()
	for _, s := range []string{"| batch", "| 1 ", "| 100 ", "| 50 ", "0.50x", "| 4.00 ", "| 9.0 ", "n/a", "n/a msgs published: no RabbitMQ counters readable here",
		"idle window (batch, 8s", "WAL flushes 3,", "counted (batch): somewhere"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
}
