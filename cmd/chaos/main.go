// Command chaos (make chaos) runs a sustained flash sale and spread load on a private
// self-healing stack (internal/node.UpHA, started and stopped by this command: three
// etcd members, three PostgreSQL nodes under Patroni in strict synchronous mode behind
// HAProxy and PgBouncer, a three-node RabbitMQ cluster behind toxiproxy, three checkout
// instances behind a client-side load balancer) while it, in turn: SIGKILLs the
// PostgreSQL leader's Patroni and postmaster together; kills an etcd member; cuts the
// leader off from etcd while it still reaches its standbys; restarts PgBouncer, then
// HAProxy; kills a RabbitMQ node; SIGKILLs an API instance; adds 200 ms latency, then a
// partition, between the instances and the broker. It never promotes anything: Patroni
// does. After each fault is healed (the killed leader's Patroni started again and
// rejoined as a standby by itself, the member, node and instance restarted, the toxics
// removed) the next one starts. Throughout, a probe writes to every PostgreSQL node
// directly and counts the moments two of them accepted a write. Once the load stops and the saga has settled it
// prints one row per fault: requests and the error rate while the fault lasted, the time
// to the first successful checkout sent after the fault, orders acknowledged vs found in
// the database, units oversold, charges per order (a fake Stripe counts them), orders
// final within the bound, and events not delivered to their consumers.
//
// It is not part of make test. It refuses to run, with one line saying why, when a
// node cannot be started.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/store"
)

// fault is one thing that goes wrong, and what puts it right again.
type fault struct {
	name   string
	inject func(ctx context.Context) error
	heal   func(ctx context.Context) error
}

// phase is a fault as it happened.
type phase struct {
	fault                fault
	start, healed, end   time.Time
	injectErr, healErr   error
	injectTook, healTook time.Duration
}

func main() {
	rate := flag.Int("rate", 40, "checkouts per second")
	window := flag.Duration("fault", 10*time.Second, "how long each fault lasts")
	gap := flag.Duration("gap", 5*time.Second, "load before the first fault and after each heal")
	bound := flag.Duration("bound", 60*time.Second, "every order must be final (PAID or failed) within this")
	drain := flag.Duration("drain", 5*time.Minute, "after the load, how long events may take to reach every consumer and the partner (nothing may be lost; a backlog may drain)")
	flash := flag.Int("flash-stock", 300, "units of the flash-sale SKU")
	dir := flag.String("dir", ".ha-chaos", "the stack's directory (wiped at start)")
	only := flag.String("faults", "", "run only the faults whose names contain one of these words (comma-separated)")
	flag.Parse()
	if err := run(*rate, *window, *gap, *bound, *drain, *flash, *dir, *only); err != nil {
		fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
		os.Exit(1)
	}
}

func run(rate int, window, gap, bound, drain time.Duration, flashStock int, dir, only string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	build, err := os.MkdirTemp("", "chaos-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(build)
	bin := filepath.Join(build, "checkout")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/checkout").CombinedOutput(); err != nil {
		return fmt.Errorf("build the service: %v: %s", err, out)
	}
	toxi, err := exec.Command("go", "tool", "-n", "github.com/Shopify/toxiproxy/v2/cmd/server").Output()
	if err != nil {
		return fmt.Errorf("build toxiproxy (go tool): %w", err)
	}
	stripe := newFakeStripe()
	defer stripe.srv.Close()
	partner := newPartner()
	defer partner.srv.Close()

	fmt.Println("chaos: starting the self-healing stack (etcd x3, Patroni x3 in strict synchronous mode, HAProxy, PgBouncer, 3 RabbitMQ nodes behind toxiproxy, 3 instances)...")
	upCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	s, err := node.UpHA(upCtx, node.HAOptions{Dir: dir, Bin: bin, ToxiproxyBin: strings.TrimSpace(string(toxi)), Log: os.Stdout,
		Env: []string{"PAYMENT_PROVIDER=stripe", "STRIPE_SECRET_KEY=sk_test_chaos", "STRIPE_API_BASE=" + stripe.srv.URL,
			"STRIPE_WEBHOOK_SECRET=whsec_chaos0123456789", "WORKER_RETRY_DELAYS=200ms,500ms,1s,2s,4s",
			"OUTBOX_POLL_INTERVAL=200ms", "SWEEP_INTERVAL=1s", "CLIENT_RATE=0", "CHECKOUT_RATE=0", "CHECKOUT_MAX_UNPAID_ORDERS=0",
			"WEBHOOK_ALLOW_PRIVATE=true", "WEBHOOK_BACKOFF_BASE=200ms"}})
	cancel()
	if s != nil {
		defer s.Down()
	}
	if err != nil {
		return fmt.Errorf("refusing to run: the HA stack cannot start here: %s", firstLine(err.Error()))
	}
	// The checks read the primary through HAProxy, on sessions of their own.
	db, err := store.Open(ctx, s.SessionURL, store.Options{MaxOpenConns: 4})
	if err != nil {
		return err
	}
	defer db.Close()

	spread := make([]string, 50)
	for i := range spread {
		spread[i] = fmt.Sprintf("SPREAD-%02d", i)
	}
	stock := map[string]int{"FLASH": flashStock}
	for _, sku := range spread {
		stock[sku] = 1_000_000
	}
	if err := seed(s, stock, partner.srv.URL); err != nil {
		return err
	}
	tokens := make([]string, 50)
	for i := range tokens {
		tokens[i], _ = auth.Sign(s.JWTSecret, fmt.Sprintf("chaos-customer-%d", i), nil, time.Hour)
	}
	backends := make([]string, len(s.Instances))
	for i, in := range s.Instances {
		backends[i] = in.Addr
	}

	var nodeURLs []string
	for _, p := range s.PG {
		nodeURLs = append(nodeURLs, p.URL())
	}
	probe, err := startWriteProbe(ctx, nodeURLs)
	if err != nil {
		return err
	}
	faults := faultsOf(s)
	if only != "" {
		var chosen []fault
		for _, f := range faults {
			for _, w := range strings.Split(only, ",") {
				if w != "" && strings.Contains(f.name, w) {
					chosen = append(chosen, f)
					break
				}
			}
		}
		faults = chosen
	}
	fmt.Printf("chaos: %d checkouts/s (half for FLASH, %d units; half spread over %d SKUs) on %d instances; each fault lasts %s\n",
		rate, flashStock, len(spread), len(backends), window)
	l := startLoad(backends, tokens, rate, "FLASH", spread)
	wait(ctx, gap)
	var phases []*phase
	for _, f := range faults {
		if ctx.Err() != nil {
			break
		}
		p := &phase{fault: f, start: time.Now()}
		p.injectErr = f.inject(ctx)
		p.injectTook = time.Since(p.start)
		fmt.Printf("  %s: %s (took %s)%s\n", p.start.Format("15:04:05"), f.name, p.injectTook.Round(time.Millisecond), errNote(p.injectErr))
		wait(ctx, window-p.injectTook)
		p.healed = time.Now()
		if f.heal != nil {
			p.healErr = f.heal(ctx)
			p.healTook = time.Since(p.healed)
			fmt.Printf("  %s: healed (took %s)%s\n", time.Now().Format("15:04:05"), p.healTook.Round(time.Millisecond), errNote(p.healErr))
		}
		wait(ctx, gap)
		p.end = time.Now()
		phases = append(phases, p)
	}
	outcomes := l.stop()
	rounds, twoWritable, firstTwo := probe.result()
	fmt.Printf("chaos: load stopped (%d requests); waiting up to %s for every order to be final and every event delivered...\n", len(outcomes), max(bound, drain))
	stopped := time.Now()
	settled := settle(ctx, db, bound)
	drained := settled
	if !settled && drain > bound {
		drained = settle(ctx, db, drain-bound)
	}
	report(ctx, db, stripe, partner, phases, outcomes, stock, bound, settled)
	if drained {
		fmt.Printf("every order final and every event delivered %s after the load stopped\n", time.Since(stopped).Round(time.Second))
	} else {
		fmt.Printf("NOT every order final and every event delivered %s after the load stopped\n", max(bound, drain))
	}
	fmt.Printf("write probe (every PostgreSQL node written directly every 100 ms): %d rounds, %d with two writable nodes %v\n", rounds, twoWritable, firstTwo)
	return ctx.Err()
}

// waitFor checks cond every 200 ms until it holds, ctx ends or within passes.
func waitFor(ctx context.Context, within time.Duration, what string, cond func() bool) error {
	for deadline := time.Now().Add(within); ctx.Err() == nil; wait(ctx, 200*time.Millisecond) {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", within, what)
		}
	}
	return ctx.Err()
}

func errNote(err error) string {
	if err == nil {
		return ""
	}
	return ": ERROR " + firstLine(err.Error())
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func faultsOf(s *node.HAStack) []fault {
	proxies := func(fn func(p *toxiclient.Proxy) error) error {
		var errs []error
		for _, name := range s.Toxiproxy.Proxies {
			p, err := s.Toxiproxy.Client().Proxy(name)
			if err == nil {
				err = fn(p)
			}
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	removeToxics := func(context.Context) error {
		return proxies(func(p *toxiclient.Proxy) error {
			toxics, err := p.Toxics()
			if err != nil {
				return err
			}
			for _, t := range toxics {
				if err := p.RemoveToxic(t.Name); err != nil {
					return err
				}
			}
			return nil
		})
	}
	// The PostgreSQL faults only inflict: Patroni elects, promotes and rejoins.
	var killed *node.Patroni
	var isolated int
	etcdToxics := func(i int, add bool) error {
		var errs []error
		for _, name := range s.Toxiproxy.EtcdProxies[i] {
			p, err := s.Toxiproxy.Client().Proxy(name)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for _, dir := range []string{"upstream", "downstream"} {
				if add {
					_, err = p.AddToxic("cut-"+dir, "timeout", dir, 1, toxiclient.Attributes{"timeout": 0})
				} else {
					err = p.RemoveToxic("cut-" + dir)
				}
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	return []fault{
		{name: "PostgreSQL leader's Patroni and postmaster SIGKILLed",
			inject: func(ctx context.Context) error {
				if killed = s.Primary(); killed == nil {
					return errors.New("no leader")
				}
				killed.KillAll()
				return nil
			},
			// The old leader's Patroni started again: it rejoins as a standby by itself
			// (crash recovery, pg_rewind); heal waits until it streams as a replica.
			heal: func(ctx context.Context) error {
				if killed == nil {
					return nil
				}
				if err := killed.Restart(ctx); err != nil {
					return err
				}
				return waitFor(ctx, 60*time.Second, "the old leader to stream as a replica", func() bool { return killed.Role(ctx) == "replica" })
			}},
		{name: "etcd member SIGKILLed",
			inject: func(context.Context) error { s.Etcd[0].Kill(); return nil },
			heal:   func(ctx context.Context) error { return s.Etcd[0].Restart(ctx) }},
		{name: "PostgreSQL leader cut off from etcd (still reaching its standbys)",
			inject: func(ctx context.Context) error {
				leader := s.Primary()
				if leader == nil {
					return errors.New("no leader")
				}
				for i, p := range s.PG {
					if p == leader {
						isolated = i
					}
				}
				return etcdToxics(isolated, true)
			},
			heal: func(ctx context.Context) error {
				if err := etcdToxics(isolated, false); err != nil {
					return err
				}
				return waitFor(ctx, 60*time.Second, "the isolated member back as a replica or leader", func() bool {
					return s.PG[isolated].Healthy(ctx)
				})
			}},
		{name: "PgBouncer SIGKILLed and restarted",
			inject: func(ctx context.Context) error { s.PgBouncer.Kill(); return s.PgBouncer.Restart(ctx) }},
		{name: "HAProxy SIGKILLed and restarted",
			inject: func(ctx context.Context) error { s.HAProxy.Kill(); return s.HAProxy.Restart(ctx) }},
		{name: "RabbitMQ node SIGKILLed",
			inject: func(context.Context) error { s.Rabbit[0].Kill(); return nil },
			heal:   func(ctx context.Context) error { return s.Rabbit[0].Restart(ctx) }},
		{name: "API instance SIGKILLed",
			inject: func(context.Context) error { s.KillInstance(s.Instances[0]); return nil },
			heal:   func(ctx context.Context) error { return s.StartInstance(ctx, s.Instances[0]) }},
		{name: "200 ms latency service<->broker",
			inject: func(context.Context) error {
				return proxies(func(p *toxiclient.Proxy) error {
					_, err := p.AddToxic("latency", "latency", "downstream", 1, toxiclient.Attributes{"latency": 200})
					return err
				})
			},
			heal: removeToxics},
		{name: "partition service<->broker",
			inject: func(context.Context) error {
				return proxies(func(p *toxiclient.Proxy) error {
					for _, dir := range []string{"upstream", "downstream"} {
						if _, err := p.AddToxic("partition-"+dir, "timeout", dir, 1, toxiclient.Attributes{"timeout": 0}); err != nil {
							return err
						}
					}
					return nil
				})
			},
			heal: removeToxics},
	}
}

// seed creates the catalog through the API, as an admin, and registers the partner's
// endpoint for every event, so the webhook fan-out and deliveries run through the faults.
func seed(s *node.HAStack, stock map[string]int, partnerURL string) error {
	token, err := auth.Sign(s.JWTSecret, "chaos-admin", []string{"admin"}, time.Hour)
	if err != nil {
		return err
	}
	c := &gqlClient{base: s.Instances[0].URL(), token: token}
	if err := c.do(`mutation($u: String!) { registerWebhook(input: {url: $u, events: ["*"]}) { webhook { id } } }`,
		map[string]any{"u": partnerURL}); err != nil {
		return err
	}
	for sku, n := range stock {
		if err := c.do(`mutation($p: ProductInput!) { upsertProduct(input: $p) { sku } }`,
			map[string]any{"p": map[string]any{"sku": sku, "name": sku, "priceCents": 1999, "currency": "USD"}}); err != nil {
			return err
		}
		if err := c.do(`mutation($s: ID!, $n: Int!) { setStock(sku: $s, warehouse: "w1", onHand: $n) { onHand } }`,
			map[string]any{"s": sku, "n": n}); err != nil {
			return err
		}
	}
	return nil
}

// orderTypes are the events the webhook fan-out consumes (every order event).
var orderTypes = event.OrderTypes

// settle waits until no order is pending payment and every event reached its consumers,
// or the bound passes. It reports whether it settled.
func settle(ctx context.Context, db *bun.DB, bound time.Duration) bool {
	deadline := time.Now().Add(bound)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		pending, err1 := count(ctx, db, "SELECT count(*) FROM orders WHERE status = 'PENDING_PAYMENT'")
		undelivered, err2 := undeliveredEvents(ctx, db, time.Time{}, time.Now().Add(time.Hour))
		open, err3 := count(ctx, db, "SELECT count(*) FROM webhook_tasks WHERE status IN ('PENDING', 'QUEUED')")
		if err1 == nil && err2 == nil && err3 == nil && pending == 0 && undelivered == 0 && open == 0 {
			return true
		}
		wait(ctx, 500*time.Millisecond)
	}
	return false
}

func count(ctx context.Context, db *bun.DB, q string, args ...any) (int, error) {
	var n int
	var err error
	for range 5 { // a pool may still hold a connection to a killed node
		if err = db.NewRaw(q, args...).Scan(ctx, &n); err == nil {
			return n, nil
		}
	}
	return 0, err
}

// undeliveredEvents counts events written in [from, to) that are not published, or not
// recorded by a consumer that takes them (the payment worker for order.placed, the
// webhook fan-out for every order event while some endpoint is registered: with none, the
// fan-out acks an event without a transaction and records nothing). A retry's row
// (destination set) has an id of its own while the inbox records the event's: only the
// event's own row is looked up in the inbox, a retry's counts while unpublished.
func undeliveredEvents(ctx context.Context, db *bun.DB, from, to time.Time) (int, error) {
	return count(ctx, db, `SELECT count(*) FROM outbox o WHERE o.created_at >= ? AND o.created_at < ? AND (
		o.published_at IS NULL
		OR (o.type = 'order.placed' AND o.destination IS NULL
			AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.consumer = 'payment' AND i.event_id = o.event_id::text))
		OR (o.type IN (?) AND o.destination IS NULL AND EXISTS (SELECT 1 FROM webhooks w WHERE w.deleted_at IS NULL)
			AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.consumer = 'webhook-fanout' AND i.event_id = o.event_id::text)))`,
		from, to, bun.List(orderTypes))
}

func report(ctx context.Context, db *bun.DB, stripe *fakeStripe, partner *partner, phases []*phase, outcomes []outcome, stock map[string]int, bound time.Duration, settled bool) {
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "fault\trequests\terrors while faulty\trecovered after\tacknowledged\tin database\tlost\tcharges/order (max)\tfinal within "+bound.String()+" (slowest placed while faulty)\tevents undelivered")
	for _, p := range phases {
		var reqs, errs, faultReqs, faultErrs int
		var acked []string
		var firstOK time.Time
		for _, o := range outcomes {
			if o.sent.Before(p.start) || !o.sent.Before(p.end) {
				continue
			}
			reqs++
			if o.err != "" {
				errs++
			}
			if o.sent.Before(p.healed) {
				faultReqs++
				if o.err != "" {
					faultErrs++
				}
			}
			if o.orderID != "" {
				acked = append(acked, o.orderID)
			}
			if o.err == "" && (firstOK.IsZero() || o.done.Before(firstOK)) {
				firstOK = o.done
			}
		}
		found := 0
		if len(acked) > 0 {
			found, _ = count(ctx, db, "SELECT count(*) FROM orders WHERE id IN (?)", bun.List(acked))
		}
		var ids []string
		var slowest float64
		var final int
		rows, err := db.QueryContext(ctx, `SELECT id::text, status <> 'PENDING_PAYMENT', extract(epoch FROM updated_at - created_at), created_at < ?
			FROM orders WHERE created_at >= ? AND created_at < ?`, p.healed, p.start, p.end)
		if err == nil {
			for rows.Next() {
				var id string
				var done, duringFault bool
				var secs float64
				rows.Scan(&id, &done, &secs, &duringFault)
				ids = append(ids, id)
				if done && secs <= bound.Seconds() {
					final++
				}
				if duringFault { // an order placed after the heal may meet the next fault
					slowest = max(slowest, secs)
				}
			}
			rows.Close()
		}
		maxCharges := 0
		for _, id := range ids {
			maxCharges = max(maxCharges, stripe.chargesOf(id))
		}
		undelivered, _ := undeliveredEvents(ctx, db, p.start, p.end)
		recovered := "never"
		if !firstOK.IsZero() {
			recovered = firstOK.Sub(p.start).Round(time.Millisecond).String()
		}
		rate := 0.0
		if faultReqs > 0 {
			rate = 100 * float64(faultErrs) / float64(faultReqs)
		}
		name := p.fault.name
		if p.injectErr != nil || p.healErr != nil {
			name += " (" + firstLine(errors.Join(p.injectErr, p.healErr).Error()) + ")"
		}
		fmt.Fprintf(w, "%s\t%d\t%d of %d (%.1f%%)\t%s\t%d\t%d\t%d\t%d\t%d/%d (%.1fs)\t%d\n", name, reqs, faultErrs, faultReqs, rate, recovered,
			len(acked), found, len(acked)-found, maxCharges, final, len(ids), slowest, undelivered)
	}
	w.Flush()

	// Stock books, over the whole run.
	oversold, unbalanced := 0, 0
	rows, err := db.QueryContext(ctx, `SELECT i.sku, sum(i.on_hand)::int, sum(i.reserved)::int,
		COALESCE((SELECT sum(oi.quantity) FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE oi.sku = i.sku AND o.status IN ('PAID', 'SHIPPED')), 0)::int,
		COALESCE((SELECT sum(oi.quantity) FROM order_items oi JOIN orders o ON o.id = oi.order_id WHERE oi.sku = i.sku AND o.status = 'PENDING_PAYMENT'), 0)::int
		FROM inventory_levels i GROUP BY i.sku`)
	if err == nil {
		for rows.Next() {
			var sku string
			var onHand, reserved, sold, pending int
			rows.Scan(&sku, &onHand, &reserved, &sold, &pending)
			oversold += max(0, sold+pending-stock[sku])
			if onHand+sold != stock[sku] || reserved != pending {
				unbalanced++
			}
		}
		rows.Close()
	}
	orders, _ := count(ctx, db, "SELECT count(*) FROM orders")
	paid, _ := count(ctx, db, "SELECT count(*) FROM orders WHERE status = 'PAID'")
	fmt.Printf("\nwhole run: %d requests, %d orders (%d PAID); oversold units: %d; SKUs whose stock does not balance: %d; settled within %s: %v\n",
		len(outcomes), orders, paid, oversold, unbalanced, bound, settled)
	events, _ := count(ctx, db, "SELECT count(*) FROM outbox WHERE type IN (?) AND destination IS NULL", bun.List(orderTypes))
	got, twice := partner.received()
	fmt.Printf("partner webhooks: %d of %d order events delivered (%d delivered more than once, absorbed by the partner's event id)\n", got, events, twice)
}

// partner is a webhook endpoint that answers 200 and counts deliveries by event id.
type partner struct {
	srv *httptest.Server
	mu  sync.Mutex
	ids map[string]int
}

func newPartner() *partner {
	p := &partner{ids: map[string]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		p.mu.Lock()
		p.ids[r.Header.Get("Checkout-Event-Id")]++
		p.mu.Unlock()
	}))
	return p
}

// received is how many distinct events reached the partner, and how many of them twice
// or more.
func (p *partner) received() (distinct, twice int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, n := range p.ids {
		distinct++
		if n > 1 {
			twice++
		}
	}
	return distinct, twice
}
