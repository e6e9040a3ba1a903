package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/loadgen"
	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/checkout-backend/checkout/internal/store"
)

// The chaos run's catalog: demand below supply (PLENTY), above it (SCARCE), and a SKU
// stocked in east only (ONE: west sells it only after a transfer).
//
// At the default rate the partition comes when most of SCARCE is sold and west holds
// little of it: west sells out during the partition while east still has some (the
// cost of a partition under escrow), and what is left sells out after the heal.
var chaosStock = stockPlan{
	"PLENTY": {"east": 400, "west": 400},
	"SCARCE": {"east": 260, "west": 30},
	"ONE":    {"east": 150},
}

// demand is each SKU's checkouts a second in each region, as shares of -rate.
var demand = map[string]float64{"PLENTY": 0.4, "SCARCE": 0.3, "ONE": 0.3}

// WANLatency is put on every link between the regions, each way, from the second phase.
const WANLatency = 50 * time.Millisecond

const checkoutMutation = `mutation RegionsCheckout($input: CheckoutInput!) {
  checkout(input: $input) { order { id } userErrors { code } }
}`

// outcome is one checkout as its buyer saw it.
type outcome struct {
	region, sku string
	sent        time.Time
	took        time.Duration
	orderID     string
	oos         bool
	err         string
}

// phase is a stretch of the sale with one fault in place.
type phase struct {
	name       string
	start, end time.Time
	notes      []string
}

type run struct {
	s   *node.RegionsStack
	dbs map[string]*pgxpool.Pool
	// transfers reads each region's escrow ledger as the service does (store.Transfers),
	// on a connection of its own opened once.
	transfers map[string]*store.Transfers
	mu        sync.Mutex
	out       []outcome
	phases    []*phase
	avail     []availSample
	stopped   atomic.Bool
}

type availSample struct {
	at      time.Time
	avail   map[string]int // region -> SCARCE available
	transit int            // SCARCE granted and not yet credited
}

func chaos(ctx context.Context, dir, bin string, rate int, phaseLen time.Duration, patroni bool) error {
	what := "PostgreSQL"
	if patroni {
		what = "etcd and three PostgreSQL nodes under Patroni"
	}
	fmt.Printf("regions chaos: starting east and west (%s, RabbitMQ with shovels, one instance each, links through toxiproxy)...\n", what)
	s, err := startStack(ctx, dir, bin, patroni)
	if err != nil {
		return err
	}
	defer s.Down()
	admin, err := auth.Sign(s.JWTSecret, "chaos-admin", []string{"admin"}, time.Hour)
	if err != nil {
		return err
	}
	plan := stockPlan{}
	for k, v := range chaosStock {
		plan[k] = v
	}
	if err := seed(s, admin, plan); err != nil {
		return err
	}
	r := &run{s: s, dbs: map[string]*pgxpool.Pool{}, transfers: map[string]*store.Transfers{}}
	for _, reg := range s.Regions {
		pool, err := pgxpool.New(ctx, reg.DatabaseURL)
		if err != nil {
			return err
		}
		defer pool.Close()
		r.dbs[reg.Name] = pool
		bdb, err := store.Open(ctx, reg.DatabaseURL, store.Options{MaxOpenConns: 1})
		if err != nil {
			return err
		}
		defer bdb.Close()
		r.transfers[reg.Name] = store.NewTransfers(bdb, time.Now, reg.Name)
	}
	east, west := s.Region("east"), s.Region("west")
	fmt.Printf("\n%s  stock: %s; %d checkouts/s in each region\n\n", s.Describe(), describeStock(plan), rate)

	stopLoad := r.startLoad(rate)
	go r.sampleScarce(ctx)
	r.phase("baseline", phaseLen)
	must(s.Latency(WANLatency))
	r.phase(fmt.Sprintf("WAN latency %s each way", WANLatency), phaseLen)
	must(s.Partition("east", "west", true))
	p := r.begin("partition")
	wait(ctx, phaseLen/3)
	var killed *node.Patroni
	if east.Patroni != nil {
		if killed = east.Patroni.Leader(ctx); killed == nil {
			return errors.New("east has no PostgreSQL leader")
		}
		p.note(fmt.Sprintf("east's PostgreSQL leader %s SIGKILLed (Patroni and postmaster): Patroni promotes the synchronous standby", killed.Name))
		killed.KillAll()
	} else {
		p.note("east's PostgreSQL killed (SIGKILL) and restarted")
		east.PG.Kill()
		if err := east.PG.Restart(ctx); err != nil {
			return fmt.Errorf("restart east's PostgreSQL: %w", err)
		}
	}
	wait(ctx, phaseLen/3)
	p.note("west's RabbitMQ stopped and restarted")
	west.Rabbit.Stop()
	if err := west.Rabbit.Restart(ctx); err != nil {
		return fmt.Errorf("restart west's RabbitMQ: %w", err)
	}
	wait(ctx, phaseLen/3)
	if killed != nil {
		// The old leader's Patroni started again rejoins as a standby by itself.
		if err := killed.Restart(ctx); err != nil {
			return fmt.Errorf("restart east's old leader: %w", err)
		}
		p.note(fmt.Sprintf("east's old leader %s restarted (it rejoins as a standby); leader now %s", killed.Name, leaderName(ctx, east)))
	}
	r.end(p)
	must(s.Partition("east", "west", false))
	healed := time.Now()
	p = r.begin("healed, until SCARCE sells out")
	soldOutAfter := r.waitScarceSoldOut(ctx, healed, 60*time.Second)
	if soldOutAfter > 0 && soldOutAfter < 300*time.Millisecond {
		p.note("SCARCE was sold out in both regions when the partition healed")
	} else if soldOutAfter > 0 {
		p.note(fmt.Sprintf("SCARCE sold out in both regions %.1f s after healing", soldOutAfter.Seconds()))
	} else {
		p.note("SCARCE not sold out 60 s after healing")
	}
	wait(ctx, 2*time.Second)
	r.end(p)
	stopLoad()
	must(s.Latency(0))
	fmt.Println("load stopped; draining (every order terminal, nothing in transit, every sale folded)...")
	drained := r.drain(ctx, 90*time.Second)

	problems := r.report(plan, soldOutAfter, drained)
	caught, control := r.negativeControl(ctx, admin)
	fmt.Printf("\nnegative control (CONTROL given whole in each region, no escrow): %s\n", control)
	if !caught {
		problems = append(problems, "the negative control was not caught: the checker cannot see an oversell")
	}
	if len(problems) > 0 {
		return fmt.Errorf("invariants broken:\n  %s", strings.Join(problems, "\n  "))
	}
	fmt.Println("\nregions chaos: every invariant held")
	return nil
}

func leaderName(ctx context.Context, r *node.Region) string {
	if l := r.Patroni.Leader(ctx); l != nil {
		return l.Name
	}
	return "none yet"
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "regions chaos:", err)
		os.Exit(1)
	}
}

func wait(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (r *run) begin(name string) *phase {
	p := &phase{name: name, start: time.Now()}
	fmt.Printf("phase: %s\n", name)
	r.phases = append(r.phases, p)
	return p
}

func (r *run) end(p *phase) { p.end = time.Now() }

func (r *run) phase(name string, d time.Duration) {
	p := r.begin(name)
	time.Sleep(d)
	r.end(p)
}

func (p *phase) note(s string) {
	p.notes = append(p.notes, s)
	fmt.Printf("  %s\n", s)
}

// startLoad runs one vegeta attacker per region and SKU until the returned stop.
func (r *run) startLoad(rate int) (stop func()) {
	var attackers []*vegeta.Attacker
	var wg sync.WaitGroup
	var seq atomic.Uint64
	for _, reg := range r.s.Regions {
		tokens := make([]string, 300)
		for i := range tokens {
			tokens[i], _ = auth.Sign(r.s.JWTSecret, fmt.Sprintf("%s-buyer%d", reg.Name, i), nil, time.Hour)
		}
		for _, sku := range sortedKeys(demand) {
			freq := max(1, int(float64(rate)*demand[sku]+0.5))
			atk := vegeta.NewAttacker(vegeta.Workers(8), vegeta.MaxWorkers(64), vegeta.Timeout(30*time.Second))
			attackers = append(attackers, atk)
			url := reg.Instance.URL() + "/graphql"
			targeter := func(t *vegeta.Target) error {
				i := seq.Add(1)
				body, _ := json.Marshal(map[string]any{"query": checkoutMutation, "variables": map[string]any{"input": map[string]any{
					"idempotencyKey": fmt.Sprintf("rc-%d", i), "paymentToken": "tok_visa",
					"items": []any{map[string]any{"sku": sku, "quantity": 1}}}}})
				t.Method, t.URL, t.Body = http.MethodPost, url, body
				t.Header = http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + tokens[i%uint64(len(tokens))]}}
				return nil
			}
			results := atk.Attack(targeter, vegeta.ConstantPacer{Freq: freq, Per: time.Second}, 0, reg.Name+"-"+sku)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for res := range results {
					o := classify(res)
					o.region, o.sku = reg.Name, sku
					r.mu.Lock()
					r.out = append(r.out, o)
					r.mu.Unlock()
				}
			}()
		}
	}
	return func() {
		for _, a := range attackers {
			a.Stop()
		}
		wg.Wait()
		r.stopped.Store(true)
	}
}

func classify(res *vegeta.Result) outcome {
	c := loadgen.ReadCheckout(res)
	return outcome{sent: res.Timestamp, took: res.Latency, orderID: c.OrderID, oos: c.OutOfStock, err: c.Err}
}

// sampleScarce reads SCARCE's availability in each region four times a second (an
// observer's reads: they cross no link of the deployment).
func (r *run) sampleScarce(ctx context.Context) {
	for ctx.Err() == nil && !r.stopped.Load() {
		s := availSample{at: time.Now(), avail: map[string]int{}}
		ok := true
		for name, db := range r.dbs {
			var n int
			c, cancel := context.WithTimeout(ctx, time.Second)
			var given, credited int
			err := db.QueryRow(c, `SELECT COALESCE((SELECT available FROM stock_available WHERE sku = 'SCARCE'), 0),
				(SELECT COALESCE(sum(given), 0) FROM stock_transfers_out WHERE sku = 'SCARCE'),
				(SELECT COALESCE(sum(quantity), 0) FROM stock_transfers_in WHERE sku = 'SCARCE')`).Scan(&n, &given, &credited)
			cancel()
			if err != nil {
				ok = false // a region's database restarting
				break
			}
			s.avail[name] = n
			s.transit += given - credited
		}
		if ok {
			r.mu.Lock()
			r.avail = append(r.avail, s)
			r.mu.Unlock()
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitScarceSoldOut waits until SCARCE has no unit available in any region and none
// in transit, and returns how long after since that was, or 0 at timeout.
func (r *run) waitScarceSoldOut(ctx context.Context, since time.Time, timeout time.Duration) time.Duration {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(100 * time.Millisecond) {
		r.mu.Lock()
		var last *availSample
		if len(r.avail) > 0 {
			last = &r.avail[len(r.avail)-1]
		}
		r.mu.Unlock()
		if last != nil && last.at.After(since) && last.avail["east"] == 0 && last.avail["west"] == 0 && last.transit == 0 {
			return last.at.Sub(since)
		}
	}
	return 0
}

// drain waits until every order is terminal, nothing is in transit and every sale is
// folded, and reports whether that came within timeout.
func (r *run) drain(ctx context.Context, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(500 * time.Millisecond) {
		pending := 0
		for _, db := range r.dbs {
			var n int
			db.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders WHERE status = 'PENDING_PAYMENT')
				+ (SELECT count(*) FROM stock_moves) + (SELECT count(*) FROM outbox WHERE published_at IS NULL)`).Scan(&n)
			pending += n
		}
		if pending == 0 && checkout.InTransit(r.ledgers(ctx))["SCARCE"] == 0 {
			return true
		}
	}
	return false
}

func (r *run) ledgers(ctx context.Context) []checkout.RegionLedger {
	var out []checkout.RegionLedger
	for _, reg := range r.s.Regions {
		l, err := r.transfers[reg.Name].Ledger(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ledger of %s: %v\n", reg.Name, err)
			continue
		}
		out = append(out, l)
	}
	return out
}

// sold is each SKU's units in paid (or shipped) orders, over every region.
func (r *run) sold(ctx context.Context) (map[string]int, map[string]map[string]int) {
	total, per := map[string]int{}, map[string]map[string]int{}
	for name, db := range r.dbs {
		per[name] = map[string]int{}
		rows, err := db.Query(ctx, `SELECT i.sku, sum(i.quantity)::int FROM order_items i JOIN orders o ON o.id = i.order_id
			WHERE o.status IN ('PAID', 'SHIPPED') GROUP BY i.sku`)
		if err != nil {
			continue
		}
		for rows.Next() {
			var sku string
			var n int
			rows.Scan(&sku, &n)
			total[sku] += n
			per[name][sku] = n
		}
		rows.Close()
	}
	return total, per
}

// report prints the figures per phase and returns the invariants that broke.
func (r *run) report(plan stockPlan, soldOutAfter time.Duration, drained bool) []string {
	ctx := context.Background()
	var problems []string
	r.mu.Lock()
	out := slices.Clone(r.out)
	samples := slices.Clone(r.avail)
	r.mu.Unlock()

	fmt.Println("\nper phase and region: checkouts acknowledged / OUT_OF_STOCK / errors, checkout p50 and p99")
	w := tabwriter.NewWriter(os.Stdout, 2, 0, 2, ' ', 0)
	fmt.Fprintln(w, "phase\tregion\tacknowledged\tOUT_OF_STOCK\terrors\tp50\tp99\tSCARCE refused while the other region had some")
	for _, p := range r.phases {
		for _, reg := range r.s.Regions {
			var ack, oos, errs, stranded int
			var lat []time.Duration
			for _, o := range out {
				if o.region != reg.Name || o.sent.Before(p.start) || !o.sent.Before(p.end) {
					continue
				}
				switch {
				case o.orderID != "":
					ack++
					lat = append(lat, o.took)
				case o.oos:
					oos++
					if o.sku == "SCARCE" && otherHad(samples, reg.Name, o.sent) {
						stranded++
					}
				default:
					errs++
				}
			}
			fmt.Fprintf(w, "%s (%.1f s)\t%s\t%d\t%d\t%d\t%s\t%s\t%d\n", p.name, p.end.Sub(p.start).Seconds(), reg.Name, ack, oos, errs, pct(lat, 50), pct(lat, 99), stranded)
			if p.name == "partition" && ack == 0 {
				problems = append(problems, fmt.Sprintf("region %s took no order during the partition", reg.Name))
			}
		}
	}
	w.Flush()
	for _, p := range r.phases {
		for _, n := range p.notes {
			fmt.Printf("  %s: %s\n", p.name, n)
		}
	}
	errCodes := map[string]int{}
	for _, o := range out {
		if o.err != "" {
			errCodes[o.err]++
		}
	}
	if len(errCodes) > 0 {
		fmt.Printf("  errors by code: %v\n", errCodes)
	}

	if !drained {
		problems = append(problems, "not drained within 90 s: orders pending, events unpublished, sales unfolded or stock in transit")
	}
	received := map[string]int{}
	for sku, per := range plan {
		for _, n := range per {
			received[sku] += n
		}
	}
	sold, perRegion := r.sold(ctx)
	fmt.Println("\nper SKU: received, sold (east + west), left on hand, in transit")
	ledgers := r.ledgers(ctx)
	transit := checkout.InTransit(ledgers)
	expected := map[string]int{}
	for _, sku := range sortedKeys(received) {
		expected[sku] = received[sku] - sold[sku]
		onHand := 0
		for _, l := range ledgers {
			onHand += l.OnHand[sku]
		}
		fmt.Printf("  %-7s received %4d  sold %4d (%d + %d)  on hand %4d  in transit %d\n", sku, received[sku], sold[sku],
			perRegion["east"][sku], perRegion["west"][sku], onHand, transit[sku])
	}
	problems = append(problems, oversold(received, sold)...)
	if bad := checkout.CheckEscrow(ledgers, expected); len(bad) > 0 {
		problems = append(problems, "escrow: "+strings.Join(bad, "; "))
	}
	given, credited := 0, 0
	for _, l := range ledgers {
		given += len(l.Given)
		credited += len(l.Credited)
	}
	fmt.Printf("  transfers: %d granted, %d credited\n", given, credited)
	if given != credited {
		problems = append(problems, fmt.Sprintf("%d transfers granted, %d credited", given, credited))
	}
	if left := expected["SCARCE"]; left > 0 {
		problems = append(problems, fmt.Sprintf("SCARCE: %d units left unsold after the sale: stranded", left))
	}
	if soldOutAfter == 0 {
		problems = append(problems, "SCARCE not sold out after healing: units stranded")
	} else if soldOutAfter > 10*time.Second {
		problems = append(problems, fmt.Sprintf("SCARCE sold out %.1f s after healing (target 10 s)", soldOutAfter.Seconds()))
	}
	problems = append(problems, r.checkOneRegionSKU(ctx)...)
	problems = append(problems, r.checkOrders(ctx, out)...)
	return problems
}

// otherHad reports whether, at the sample nearest before t, a region other than
// region had SCARCE available.
func otherHad(samples []availSample, region string, t time.Time) bool {
	i := sort.Search(len(samples), func(i int) bool { return samples[i].at.After(t) }) - 1
	if i < 0 {
		return false
	}
	for name, n := range samples[i].avail {
		if name != region && n > 0 {
			return true
		}
	}
	return false
}

func pct(d []time.Duration, p int) string {
	if len(d) == 0 {
		return "-"
	}
	slices.Sort(d)
	return d[(len(d)-1)*p/100].Round(100 * time.Microsecond).String()
}

// checkOneRegionSKU: west, which started with none of ONE (stocked in east only), sold
// some: transfers reached it. That it never sold more than it was given is also
// printed; PostgreSQL's CHECK (on_hand >= 0) and the escrow check already hold it to
// that. (Times are not compared: an order's time is taken when its request arrives,
// which may be before the credit its reservation then used.)
func (r *run) checkOneRegionSKU(ctx context.Context) []string {
	var sold, credited int
	var firstCredit *time.Time
	db := r.dbs["west"]
	db.QueryRow(ctx, `SELECT COALESCE(sum(i.quantity), 0)::int FROM order_items i JOIN orders o ON o.id = i.order_id
		WHERE i.sku = 'ONE' AND o.status IN ('PAID', 'SHIPPED')`).Scan(&sold)
	db.QueryRow(ctx, `SELECT COALESCE(sum(quantity), 0)::int, min(credited_at) FILTER (WHERE quantity > 0) FROM stock_transfers_in WHERE sku = 'ONE'`).Scan(&credited, &firstCredit)
	switch {
	case sold == 0:
		return []string{"west never sold ONE (stocked in east only): no transfer reached it"}
	case sold > credited:
		return []string{fmt.Sprintf("west sold %d of ONE but was given only %d by transfers", sold, credited)}
	}
	fmt.Printf("  ONE: west was given %d by transfers (the first at %s) and sold %d\n", credited, firstCredit.Format("15:04:05.000"), sold)
	return nil
}

// checkOrders: every acknowledged order is in exactly one region (its home), terminal,
// with at most one payment, a succeeded one if it is paid.
func (r *run) checkOrders(ctx context.Context, out []outcome) []string {
	var problems []string
	ids := map[string][]string{} // region -> ids
	for _, o := range out {
		if o.orderID != "" {
			ids[o.region] = append(ids[o.region], o.orderID)
		}
	}
	total := 0
	for _, reg := range r.s.Regions {
		for _, other := range r.s.Regions {
			var n int
			if err := r.dbs[other.Name].QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = ANY($1::uuid[])`, ids[reg.Name]).Scan(&n); err != nil {
				problems = append(problems, err.Error())
				continue
			}
			want := 0
			if other == reg {
				want = len(ids[reg.Name])
			}
			if n != want {
				problems = append(problems, fmt.Sprintf("%d of the %d orders acknowledged in %s are in %s's database (want %d)", n, len(ids[reg.Name]), reg.Name, other.Name, want))
			}
		}
		var open, badPay int
		r.dbs[reg.Name].QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = ANY($1::uuid[]) AND status = 'PENDING_PAYMENT'`, ids[reg.Name]).Scan(&open)
		r.dbs[reg.Name].QueryRow(ctx, `SELECT count(*) FROM orders o WHERE o.id = ANY($1::uuid[]) AND (
				(SELECT count(*) FROM payments p WHERE p.order_id = o.id) > 1
				OR (o.status IN ('PAID', 'SHIPPED') AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.order_id = o.id AND p.status = 'succeeded')))`,
			ids[reg.Name]).Scan(&badPay)
		if open > 0 {
			problems = append(problems, fmt.Sprintf("%d acknowledged orders of %s still PENDING_PAYMENT after the drain", open, reg.Name))
		}
		if badPay > 0 {
			problems = append(problems, fmt.Sprintf("%d orders of %s charged more than once, or paid without a succeeded payment", badPay, reg.Name))
		}
		total += len(ids[reg.Name])
	}
	fmt.Printf("  orders: %d acknowledged (east %d, west %d), each in its home region only, terminal, charged at most once\n",
		total, len(ids["east"]), len(ids["west"]))
	return problems
}

// negativeControl sells a SKU given whole to each region (the mistake escrow exists to
// prevent: every region believes it holds all the stock) and reports whether the
// checker catches the oversell.
func (r *run) negativeControl(ctx context.Context, admin string) (bool, string) {
	const stock = 20
	for _, reg := range r.s.Regions {
		base := reg.Instance.URL()
		gql(base, admin, `mutation { upsertProduct(input: {sku: "CONTROL", name: "Control", priceCents: 100, currency: "USD"}) { sku } }`, nil)
		gql(base, admin, fmt.Sprintf(`mutation { setStock(sku: "CONTROL", warehouse: "w-%s", onHand: %d) { onHand } }`, reg.Name, stock), nil)
	}
	var wg sync.WaitGroup
	for _, reg := range r.s.Regions {
		for i := range stock + 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, _ := auth.Sign(r.s.JWTSecret, fmt.Sprintf("control-%s-%d", reg.Name, i), nil, time.Hour)
				gql(reg.Instance.URL(), tok, checkoutMutation, map[string]any{"input": map[string]any{
					"idempotencyKey": fmt.Sprintf("control-%d", i), "paymentToken": "tok_visa",
					"items": []any{map[string]any{"sku": "CONTROL", "quantity": 1}}}})
			}()
		}
	}
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	var sold int
	for time.Now().Before(deadline) {
		s, _ := r.sold(ctx)
		if sold = s["CONTROL"]; sold >= 2*stock {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if bad := oversold(map[string]int{"CONTROL": stock}, map[string]int{"CONTROL": sold}); len(bad) > 0 {
		return true, "caught: " + strings.Join(bad, "; ")
	}
	return false, fmt.Sprintf("NOT caught: %d sold of %d", sold, stock)
}

// oversold is the first check of the run: for each SKU, the units sold over every
// region never exceed the units received.
func oversold(received, sold map[string]int) []string {
	var bad []string
	for _, sku := range sortedKeys(received) {
		if sold[sku] > received[sku] {
			bad = append(bad, fmt.Sprintf("%s oversold: %d sold of %d", sku, sold[sku], received[sku]))
		}
	}
	return bad
}
