package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/checkout-backend/checkout/internal/platform/procstat"
)

// What an order costs: the strategies suite reads a set of counters just before each
// hot level's load starts and again once the orders of that level are settled, and
// divides the differences by the orders that reached PAID in between.
//
// The counters:
//   - PostgreSQL: pg_stat_wal.wal_sync (WAL flushes), pg_stat_wal.wal_bytes and
//     pg_stat_database.xact_commit of the bench's database. pg_stat_wal is server-wide
//     and so is the WAL: the bench expects a quiet server, and any other client's
//     activity counts too (the idle window printed first for each strategy shows what
//     the server and the idle service do alone; it is not subtracted). xact_commit
//     counts read-only transactions too; the bench's own statements in the window (its
//     read of the counters and its polls for the settle) are subtracted.
//   - RabbitMQ: messages published to and delivered by the broker, broker-wide (see
//     newBrokerCounters for where they are read).
//   - CPU: utime+stime from /proc of the service, of PostgreSQL (the postmaster with
//     the times of the children it reaped, plus every live child) and of RabbitMQ (the
//     beam.smp of the server), in milliseconds.
//
// Freshness of PostgreSQL's counters (PG15): a backend flushes its pending counters to
// shared memory when it goes idle, at most once a second (PGSTAT_MIN_INTERVAL), and no
// function forces another backend's flush (pg_stat_force_next_flush() only touches the
// caller's own). So the bench waits statsFlushWait after the load's orders settled
// (and before the first read, so that earlier polls are flushed too), then reads in a
// transaction of its own that first calls pg_stat_clear_snapshot(): with the default
// stats_fetch_consistency = cache, a snapshot lives only within a transaction.
const statsFlushWait = 1500 * time.Millisecond

// The counters of a costSnapshot, in the order the cost table prints them.
const (
	cWALSyncs   = "WAL flushes"
	cWALBytes   = "WAL bytes"
	cCommits    = "commits"
	cPublished  = "msgs published"
	cDelivered  = "msgs delivered"
	cServiceCPU = "service CPU ms"
	cPostgreCPU = "PostgreSQL CPU ms"
	cRabbitCPU  = "RabbitMQ CPU ms"
)

var costCounterNames = []string{cWALSyncs, cWALBytes, cCommits, cPublished, cDelivered, cServiceCPU, cPostgreCPU, cRabbitCPU}

// costSnapshot is the counters at one moment; a counter that could not be read has a
// reason in missing instead of a value.
type costSnapshot struct {
	at      time.Time
	paid    int // PAID orders of the customers read() was given
	values  map[string]float64
	missing map[string]string
}

func newCostSnapshot() costSnapshot {
	return costSnapshot{at: time.Now(), values: map[string]float64{}, missing: map[string]string{}}
}

func (s costSnapshot) set(name string, v float64, err error) {
	if err != nil {
		s.missing[name] = err.Error()
		return
	}
	s.values[name] = v
}

// costWindow is the difference of two snapshots: the totals over the window, and what
// could not be measured (with why).
type costWindow struct {
	elapsed time.Duration
	totals  map[string]float64
	missing map[string]string
	paid    int // orders that reached PAID in the window
}

// costBetween subtracts before from after; ownCommits (the bench's own transactions in
// the bench database during the window) comes off the commits. A counter missing from
// either snapshot is missing from the window; one that went backwards (a server
// restarted, pg_stat_reset) is missing too rather than negative.
func costBetween(before, after costSnapshot, ownCommits, paid int) costWindow {
	w := costWindow{elapsed: after.at.Sub(before.at), totals: map[string]float64{}, missing: map[string]string{}, paid: paid}
	for _, name := range costCounterNames {
		b, okB := before.values[name]
		a, okA := after.values[name]
		switch {
		case !okB || !okA:
			w.missing[name] = cmp.Or(after.missing[name], before.missing[name], "not read")
		case a < b:
			w.missing[name] = "the counter went backwards (reset or restart)"
		default:
			d := a - b
			if name == cCommits {
				d = math.Max(d-float64(ownCommits), 0)
			}
			w.totals[name] = d
		}
	}
	return w
}

// perOrder is the window's total of a counter per paid order; ok is false when the
// counter is missing or no order was paid.
func (w costWindow) perOrder(name string) (float64, bool) {
	v, ok := w.totals[name]
	if !ok || w.paid <= 0 {
		return 0, false
	}
	return v / float64(w.paid), true
}

// costReader reads the snapshots of one service.
type costReader struct {
	db         *pgxpool.Pool
	servicePID int
	postmaster int
	pgErr      error
	beam       int
	beamErr    error
	broker     brokerCounters
}

// newCostReader finds the processes to account: the service (servicePID), the
// postmaster of the database db (the parent of one of its backends) and the RabbitMQ
// server's beam.smp; and how to read the broker's counters.
func newCostReader(ctx context.Context, db *pgxpool.Pool, servicePID int, amqpURL string) *costReader {
	r := &costReader{db: db, servicePID: servicePID}
	var backend int
	if err := db.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		r.pgErr = err
	} else if st, err := procstat.Read(backend); err != nil {
		r.pgErr = err
	} else {
		r.postmaster = st.PPID
	}
	r.beam, r.beamErr = procstat.RabbitBeam()
	r.broker = newBrokerCounters(ctx, amqpURL)
	return r
}

// describe says where each figure comes from, for the report's header.
func (r *costReader) describe() string {
	pg := fmt.Sprintf("postmaster pid %d and its children", r.postmaster)
	if r.pgErr != nil {
		pg = "n/a: " + r.pgErr.Error()
	}
	mq := fmt.Sprintf("beam.smp pid %d", r.beam)
	if r.beamErr != nil {
		mq = "n/a: " + r.beamErr.Error()
	}
	return fmt.Sprintf("CPU of service pid %d, PostgreSQL %s, RabbitMQ %s; broker messages: %s", r.servicePID, pg, mq, r.broker.describe())
}

// read takes a snapshot now, with the count of PAID orders of the customers of prefix;
// its reads of PostgreSQL are one transaction in the bench database.
func (r *costReader) read(ctx context.Context, prefix string) costSnapshot {
	s := newCostSnapshot()
	var syncs, bytes, commits float64
	err := pgx.BeginFunc(ctx, r.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT w.wal_sync::float8, w.wal_bytes::float8, d.xact_commit::float8
			FROM pg_stat_wal w, pg_stat_database d WHERE d.datname = current_database()`).Scan(&syncs, &bytes, &commits); err != nil {
			return err
		}
		return tx.QueryRow(ctx, "SELECT count(*)::int FROM orders WHERE left(customer_id, length($1)) = $1 AND status = 'PAID'", prefix).Scan(&s.paid)
	})
	s.set(cWALSyncs, syncs, err)
	s.set(cWALBytes, bytes, err)
	s.set(cCommits, commits, err)

	pub, dlv, err := r.broker.read(ctx)
	s.set(cPublished, pub, err)
	s.set(cDelivered, dlv, err)

	s.setCPU(cServiceCPU)(procstat.CPU(r.servicePID, false))
	if r.pgErr != nil {
		s.set(cPostgreCPU, 0, r.pgErr)
	} else {
		s.setCPU(cPostgreCPU)(procstat.CPU(r.postmaster, true))
	}
	if r.beamErr != nil {
		s.set(cRabbitCPU, 0, r.beamErr)
	} else {
		s.setCPU(cRabbitCPU)(procstat.CPU(r.beam, false))
	}
	s.at = time.Now()
	return s
}

// setCPU returns a setter of a CPU counter from clock ticks, in milliseconds.
func (s costSnapshot) setCPU(name string) func(ticks uint64, err error) {
	return func(ticks uint64, err error) { s.set(name, ticksToMillis(ticks), err) }
}

func ticksToMillis(ticks uint64) float64 { return float64(ticks) * 1000 / procstat.ClockTicks }

// brokerCounters reads RabbitMQ's cumulative counts of messages published (received
// from publishers) and delivered (to consumers), broker-wide.
type brokerCounters struct {
	source string // what answered; "" when nothing did
	why    string // why nothing did
	read   func(ctx context.Context) (published, delivered float64, err error)
}

func (b brokerCounters) describe() string {
	if b.source == "" {
		return "n/a (" + b.why + ")"
	}
	return b.source
}

// newBrokerCounters tries, in order, the management plugin's HTTP API
// (127.0.0.1:15672, /api/overview's message_stats, with the AMQP URL's credentials),
// the Prometheus plugin (127.0.0.1:15692/metrics, the rabbitmq_global_* counters) and
// `rabbitmqctl eval` of rabbit_global_counters:overview() (the counters both plugins
// export; it needs the broker's Erlang cookie, i.e. root or the rabbitmq user, and
// starts an Erlang VM of about a second per read). `rabbitmqctl list_queues` and
// list_exchanges have no cumulative counts without the management plugin. The first
// that answers is used for the whole run; when none does, the messages columns say n/a.
func newBrokerCounters(ctx context.Context, amqpURL string) brokerCounters {
	user, pass := "guest", "guest"
	if u, err := url.Parse(strings.Split(amqpURL, ",")[0]); err == nil && u.User != nil {
		user = u.User.Username()
		pass, _ = u.User.Password()
	}
	client := &http.Client{Timeout: 3 * time.Second}
	get := func(ctx context.Context, addr string, auth bool) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr, nil)
		if err != nil {
			return nil, err
		}
		if auth {
			req.SetBasicAuth(user, pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%s: HTTP %d", addr, resp.StatusCode)
		}
		return body, nil
	}
	sources := []brokerCounters{
		{source: "management API 127.0.0.1:15672/api/overview", read: func(ctx context.Context) (float64, float64, error) {
			b, err := get(ctx, "http://127.0.0.1:15672/api/overview", true)
			if err != nil {
				return 0, 0, err
			}
			return parseManagementOverview(b)
		}},
		{source: "Prometheus 127.0.0.1:15692/metrics", read: func(ctx context.Context) (float64, float64, error) {
			b, err := get(ctx, "http://127.0.0.1:15692/metrics", false)
			if err != nil {
				return 0, 0, err
			}
			return parsePrometheusGlobal(b)
		}},
		{source: "rabbitmqctl eval rabbit_global_counters:overview()", read: func(ctx context.Context) (float64, float64, error) {
			ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "rabbitmqctl", "eval", rabbitmqctlEval).CombinedOutput()
			if err != nil {
				return 0, 0, fmt.Errorf("rabbitmqctl: %v: %s", err, tail(out, 2))
			}
			return parseRabbitmqctlEval(out)
		}},
	}
	var whys []string
	for _, s := range sources {
		if _, _, err := s.read(ctx); err != nil {
			whys = append(whys, s.source+": "+err.Error())
			continue
		}
		return s
	}
	why := strings.Join(whys, "; ")
	return brokerCounters{why: why, read: func(context.Context) (float64, float64, error) {
		return 0, 0, errors.New("no RabbitMQ counters readable here")
	}}
}

// rabbitmqctlEval prints the AMQP 0-9-1 messages received from publishers and the sum
// of messages delivered over the queue types.
const rabbitmqctlEval = `M = rabbit_global_counters:overview(), ` +
	`R = maps:get(messages_received_total, maps:get([{protocol,amqp091}], M), 0), ` +
	`D = lists:sum([maps:get(messages_delivered_total, V, 0) || {K, V} <- maps:to_list(M), lists:member({protocol,amqp091}, K), lists:keymember(queue_type, 1, K)]), ` +
	`io:format("received ~b delivered ~b~n", [R, D]).`

var rabbitmqctlRe = regexp.MustCompile(`received (\d+) delivered (\d+)`)

func parseRabbitmqctlEval(out []byte) (published, delivered float64, err error) {
	m := rabbitmqctlRe.FindSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("unexpected rabbitmqctl output: %q", tail(out, 2))
	}
	p, _ := strconv.ParseFloat(string(m[1]), 64)
	d, _ := strconv.ParseFloat(string(m[2]), 64)
	return p, d, nil
}

// parseManagementOverview reads message_stats.publish and message_stats.deliver_get
// of GET /api/overview. A broker that has seen no message yet has no such fields: 0.
func parseManagementOverview(b []byte) (published, delivered float64, err error) {
	var o struct {
		MessageStats *struct {
			Publish    float64 `json:"publish"`
			DeliverGet float64 `json:"deliver_get"`
		} `json:"message_stats"`
		RabbitMQVersion string `json:"rabbitmq_version"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return 0, 0, fmt.Errorf("management overview: %w", err)
	}
	if o.RabbitMQVersion == "" {
		return 0, 0, errors.New("management overview: not a RabbitMQ overview")
	}
	if o.MessageStats == nil {
		return 0, 0, nil
	}
	return o.MessageStats.Publish, o.MessageStats.DeliverGet, nil
}

// parsePrometheusGlobal sums rabbitmq_global_messages_received_total and
// rabbitmq_global_messages_delivered_total (over their labels: protocol, queue type) of
// the Prometheus plugin's text exposition.
func parsePrometheusGlobal(b []byte) (published, delivered float64, err error) {
	var seenR, seenD bool
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '{'); i >= 0 {
			name = line[:i]
			if j := strings.LastIndexByte(line, '}'); j > i {
				rest = line[j+1:]
			}
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		switch name {
		case "rabbitmq_global_messages_received_total":
			published, seenR = published+v, true
		case "rabbitmq_global_messages_delivered_total":
			delivered, seenD = delivered+v, true
		}
	}
	if !seenR || !seenD {
		return 0, 0, errors.New("no rabbitmq_global_messages_{received,delivered}_total in the metrics")
	}
	return published, delivered, nil
}
