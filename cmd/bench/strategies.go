package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/auth"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The strategies suite (make bench): the raw single-row ceiling measured first, then for
// each reservation strategy a service started as users run it (its own defaults: relay,
// workers and shedding on) and measured on
//   - one hot SKU with stock that never runs out, at each -in-flight level: orders/s,
//     p50/p99, refusals (429/503), optimistic retries, the ratio to the raw ceiling, and
//     what a paid order cost (cost.go), after an idle window of the same length;
//   - the spread workload (200 SKUs, 1-3 lines) at 64 in flight, and checkout-to-PAID;
//   - the flash sale at defaults: 400 buyers, 100 at a time, stock 50: exactly 50
//     orders and 350 OUT_OF_STOCK, no other answer, nothing oversold or undersold;
//   - for the first strategy, the saga's pace: -pace at each -pace-at fraction (80% and
//     35%) of the strategy's best orders/s, and checkout-to-PAID over it.

// hotStock never runs out during the hot runs.
const hotStock = 50_000_000

type hotRow struct {
	strategy string
	inFlight int
	stats    *loadStats
	retries  float64
	batchAvg float64
	cost     costWindow // what the level's paid orders cost
}

// paceRun is one run of the saga's pace: a steady offered rate, and how long its
// orders took from checkout to PAID.
type paceRun struct {
	fraction float64 // of the strategy's best orders/s (0: -pace-rate)
	rate     int
	stats    *loadStats
	toPaid   durStats
	left     int
}

type strategyRun struct {
	strategy  string
	hot       []hotRow
	spread    *loadStats
	toPaid    durStats
	flash     *loadStats
	flashBad  []string
	paces     []paceRun
	failures  []string
	strategyE error
	idle      *costWindow // the counters over an idle window as long as a level
	costFrom  string      // where the cost figures come from
}

func runStrategySuite(ctx context.Context, opts options, out io.Writer) error {
	dir, err := os.MkdirTemp("", "checkout-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if opts.bin == "" {
		if opts.bin, err = buildService(ctx, dir, out); err != nil {
			return err
		}
	}
	_, _ = raiseFileLimit(uint64(4 * maxInt(opts.inFlight)))
	fmt.Fprintf(out, "bench: strategies suite on %d CPUs, %s; %s per level, in flight %v\n\n", runtime.NumCPU(), time.Now().Format("2006-01-02"), opts.hotDuration, opts.inFlight)

	dbURL, err := recreateDatabase(ctx, opts.databaseURL, opts.benchDB)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "bench: raw single-row ceiling (pgx, BEGIN; SELECT ... FOR UPDATE; UPDATE; 3 INSERTs; COMMIT) ...\n")
	raw, err := measureRawCeiling(ctx, dbURL, opts.inFlight, opts.rawDuration)
	if err != nil {
		return err
	}
	ceiling := 0.0
	for _, r := range raw {
		fmt.Fprintf(out, "  %4d in flight: %7.0f tx/s  (p50 %s, p99 %s)\n", r.inFlight, r.txPerSec, fmtDur(r.p50), fmtDur(r.p99))
		ceiling = max(ceiling, r.txPerSec)
	}
	fmt.Fprintf(out, "  ceiling: %.0f tx/s\n\n", ceiling)

	var runs []*strategyRun
	for i, s := range opts.strategies {
		if ctx.Err() != nil {
			break
		}
		run := &strategyRun{strategy: s}
		runs = append(runs, run)
		if err := runStrategy(ctx, opts, s, i == 0, run, out); err != nil {
			run.strategyE = err
			fmt.Fprintf(out, "bench: strategy %s: %v\n", s, err)
		}
	}
	printStrategyTables(out, raw, ceiling, runs)
	var failed []string
	for _, r := range runs {
		if r.strategyE != nil {
			failed = append(failed, r.strategy+": "+r.strategyE.Error())
		}
		for _, f := range r.failures {
			failed = append(failed, r.strategy+": "+f)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("broken guarantees:\n  %s", strings.Join(failed, "\n  "))
	}
	return nil
}

func maxInt(xs []int) int {
	m := 0
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}

func runStrategy(ctx context.Context, opts options, strategy string, first bool, run *strategyRun, out io.Writer) error {
	o := opts
	o.asUsersRun = true
	// The service's defaults, except the per-customer limits: the bench's customers (1,000
	// by default) each buy several times a second, which CHECKOUT_RATE and
	// CHECKOUT_MAX_UNPAID_ORDERS are there to refuse; a real sale's buyers buy once or
	// twice. The flash sale at every default is deploy's TestRunningService_FlashSaleAtDefaults_NobodyShed.
	o.serviceEnv = map[string]string{"RESERVATION_STRATEGY": strategy, "CHECKOUT_RATE": "0", "CHECKOUT_MAX_UNPAID_ORDERS": "0"}
	if strategy == "redis" {
		u := os.Getenv("REDIS_URL")
		if u == "" {
			u = "redis://127.0.0.1:6379/0"
		}
		o.serviceEnv["REDIS_URL"] = u
	}
	fmt.Fprintf(out, "== strategy %s\n", strategy)
	svc, err := startLocalService(ctx, o, out)
	if err != nil {
		return err
	}
	defer svc.stop(out)
	db, err := openDB(ctx, svc.databaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	runID := randomHex(3)
	admin, err := newGraphQLClient(svc.baseURL, o.jwtSecret, "bench-"+runID+"-admin", []string{"admin"}, time.Hour)
	if err != nil {
		return err
	}
	env := func(tag string) (runEnv, []http.Header, error) {
		e := runEnv{opts: o, target: svc.baseURL, db: db, admin: admin, prefix: fmt.Sprintf("B%s-%s", runID, tag),
			customerPrefix: fmt.Sprintf("bench-%s-%s-", runID, tag), seed: o.seed}
		headers, err := customerHeaders(o, e.customerPrefix)
		return e, headers, err
	}
	plan := func(e runEnv, headers []http.Header, items func() []lineItem, name string, inFlight int) attackPlan {
		return attackPlan{name: name, url: svc.baseURL + "/graphql", duration: o.hotDuration, concurrency: inFlight,
			timeout: o.timeout, keyPrefix: e.prefix + "-" + name, headers: headers, items: items}
	}

	// One hot SKU that never sells out, at each level.
	hotEnv, headers, err := env("HOT")
	if err != nil {
		return err
	}
	hot := []productSpec{{SKU: hotEnv.prefix + "-HOT", PriceCents: 15000, Stock: map[string]int{"bench-ams": hotStock}}}
	if err := admin.createCatalog(ctx, hot); err != nil {
		return err
	}
	oneHot := func() []lineItem { return []lineItem{{SKU: hot[0].SKU, Quantity: 1}} }
	// quiet waits until the earlier runs' orders are settled and their events consumed
	// everywhere, so no run pays for the backlog of the one before.
	quiet := func(prefix string) error {
		if _, err := waitSettled(ctx, db, prefix, 5*time.Minute, nil); err != nil {
			return err
		}
		if left, err := waitBrokerIdle(ctx, svc.env, 5*time.Minute); err != nil || left > 0 {
			fmt.Fprintf(out, "  (the broker still holds %d messages of the earlier runs: %v)\n", left, err)
		}
		return nil
	}
	// What an order costs (cost.go): the counters of an idle window as long as a level
	// first (the server's and the idle service's own activity; not subtracted), then
	// each level's. A level's window starts just before its first request and ends once
	// its orders are settled (no order of the level waits for its payment, the outbox is
	// drained, the broker's work queues are empty) and statsFlushWait has passed; its
	// paid orders are those that reached PAID in that window. The settle wait is part of
	// the window: the figures are per paid order, not per second. The bench's scrape of
	// the service's /metrics after the attack (one outbox query, passive queue declares)
	// falls in the window and counts as the service's.
	costs := newCostReader(ctx, db, svc.cmd.Process.Pid, amqpURLOf(svc.env))
	run.costFrom = costs.describe()
	fmt.Fprintf(out, "  counting: %s\n", run.costFrom)
	if err := quiet(hotEnv.customerPrefix); err != nil {
		return err
	}
	if sleepCtx(ctx, statsFlushWait) == nil {
		before := costs.read(ctx, hotEnv.customerPrefix)
		if sleepCtx(ctx, o.hotDuration) == nil {
			idle := costBetween(before, costs.read(ctx, hotEnv.customerPrefix), 1, 0)
			run.idle = &idle
			fmt.Fprintf(out, "  idle %s, no load: %s\n", o.hotDuration, idle.totalsText())
		}
	}
	for _, n := range o.inFlight {
		if err := quiet(hotEnv.customerPrefix); err != nil {
			return err
		}
		if err := sleepCtx(ctx, statsFlushWait); err != nil {
			return err
		}
		costBefore := costs.read(ctx, hotEnv.customerPrefix)
		before := scrapeMetrics(ctx, svc.baseURL)
		st := attack(ctx, plan(hotEnv, headers, oneHot, fmt.Sprintf("hot-%d", n), n), io.Discard)
		after := scrapeMetrics(ctx, svc.baseURL)
		row := hotRow{strategy: strategy, inFlight: n, stats: st, retries: after["checkout_reservation_retries_total"] - before["checkout_reservation_retries_total"]}
		if c := after["checkout_reservation_batch_size_count"] - before["checkout_reservation_batch_size_count"]; c > 0 {
			row.batchAvg = (after["checkout_reservation_batch_size_sum"] - before["checkout_reservation_batch_size_sum"]) / c
		}
		settled, err := waitSettled(ctx, db, hotEnv.customerPrefix, 5*time.Minute, nil)
		if err != nil {
			return err
		}
		if left, err := waitBrokerIdle(ctx, svc.env, 5*time.Minute); err != nil || left > 0 {
			fmt.Fprintf(out, "  (the broker still holds %d messages of this level: %v)\n", left, err)
		}
		if err := sleepCtx(ctx, statsFlushWait); err != nil {
			return err
		}
		costAfter := costs.read(ctx, hotEnv.customerPrefix)
		settledM := scrapeMetrics(ctx, svc.baseURL)
		// The bench's own transactions in the window: its first read and the settle's polls.
		row.cost = costBetween(costBefore, costAfter, 1+settled.polls, costAfter.paid-costBefore.paid)
		run.hot = append(run.hot, row)
		fmt.Fprintf(out, "  hot SKU, %4d in flight: %7.1f orders/s  p50 %-8s p99 %-8s refused %d  other %d\n", n,
			perSecond(st.Placed, st.Elapsed), fmtDur(st.Latency.P50), fmtDur(st.Latency.P99), refused(st), st.OtherErrors()-refused(st))
		fmt.Fprintf(out, "    per paid order (%d paid, window %s): %s\n", row.cost.paid, row.cost.elapsed.Round(100*time.Millisecond), row.cost.perOrderText())
		if pubs, evs := settledM[relayPublishes]-before[relayPublishes], settledM[relayEvents]-before[relayEvents]; pubs > 0 && row.cost.paid > 0 {
			// This instance's relay: each publish is one confirm RabbitMQ waits for.
			fmt.Fprintf(out, "    relay: %.0f events in %.0f publishes (%.1f a publish, %.2f publishes per paid order)\n", evs, pubs, evs/pubs, pubs/float64(row.cost.paid))
		}
	}
	if err := quiet(hotEnv.customerPrefix); err != nil {
		return err
	}

	// The spread workload, then its checkout-to-PAID once its payments landed.
	spEnv, spHeaders, err := env("SP")
	if err != nil {
		return err
	}
	spCatalog := spread.catalog(spEnv.prefix)
	if err := admin.createCatalog(ctx, spCatalog); err != nil {
		return err
	}
	run.spread = attack(ctx, plan(spEnv, spHeaders, lockedItems(spread, spCatalog, o.seed), "spread", 64), io.Discard)
	if _, err := waitSettled(ctx, db, spEnv.customerPrefix, 5*time.Minute, nil); err != nil {
		return err
	}
	if f, err := readPipeline(ctx, db, spEnv.customerPrefix); err == nil {
		run.toPaid = f.toPaid
	}
	fmt.Fprintf(out, "  spread, 64 in flight:     %7.1f checkouts/s  p50 %s p99 %s; checkout to PAID %s\n",
		perSecond(run.spread.Placed, run.spread.Elapsed), fmtDur(run.spread.Latency.P50), fmtDur(run.spread.Latency.P99), run.toPaid)

	// The flash sale at defaults: 400 buyers, 100 at a time, on 50 units.
	fsEnv, fsHeaders, err := env("FS")
	if err != nil {
		return err
	}
	fsSKU := []productSpec{{SKU: fsEnv.prefix + "-SALE", PriceCents: 15000, Stock: map[string]int{"bench-ams": 50}}}
	if err := admin.createCatalog(ctx, fsSKU); err != nil {
		return err
	}
	fp := plan(fsEnv, fsHeaders, func() []lineItem { return []lineItem{{SKU: fsSKU[0].SKU, Quantity: 1}} }, "flash", 100)
	fp.duration, fp.requests = 0, 400
	run.flash = attack(ctx, fp, io.Discard)
	if run.flash.Placed != 50 || run.flash.OutOfStock != 350 || run.flash.OtherErrors() != 0 {
		run.flashBad = append(run.flashBad, fmt.Sprintf("flash sale: %d orders, %d OUT_OF_STOCK, other %v; want 50, 350, none",
			run.flash.Placed, run.flash.OutOfStock, run.flash.Errors))
	}
	var sold, orders, keys, distinctKeys int
	if err := db.QueryRow(ctx, `SELECT (SELECT COALESCE(sum(on_hand), 0)::int FROM inventory_levels WHERE sku = $1),
			(SELECT COALESCE(sum(reserved), 0)::int FROM inventory_levels WHERE sku = $1),
			(SELECT count(*)::int FROM idempotency_keys WHERE left(customer_id, length($2)) = $2),
			(SELECT count(DISTINCT (customer_id, key))::int FROM idempotency_keys WHERE left(customer_id, length($2)) = $2)`,
		fsSKU[0].SKU, fsEnv.customerPrefix).Scan(&sold, &orders, &keys, &distinctKeys); err != nil {
		return err
	}
	// sold holds on_hand now, orders reserved: 50 units went to orders, none left.
	onHand, reserved := sold, orders
	if onHand-reserved != 0 {
		run.flashBad = append(run.flashBad, fmt.Sprintf("undersold: %d units left while buyers were refused", onHand-reserved))
	}
	if n := countOrders(ctx, db, fsEnv.customerPrefix); n > 50 {
		run.flashBad = append(run.flashBad, fmt.Sprintf("oversold: %d orders for 50 units", n))
	}
	if keys != distinctKeys {
		run.flashBad = append(run.flashBad, "an idempotency key holds two orders")
	}
	run.failures = append(run.failures, run.flashBad...)
	fmt.Fprintf(out, "  flash sale 400 buyers @100 on 50: %d orders, %d OUT_OF_STOCK, other %v\n", run.flash.Placed, run.flash.OutOfStock, run.flash.Errors)

	// The saga's pace: steady rates (fractions of the best) for a while.
	if first && o.paceDuration > 0 {
		best := 0.0
		for _, h := range run.hot {
			best = max(best, perSecond(h.stats.Placed, h.stats.Elapsed))
		}
		points := []paceRun{}
		for _, f := range o.paceAt {
			points = append(points, paceRun{fraction: f, rate: max(int(f*best), 1)})
		}
		for _, r := range o.paceRates {
			points = append(points, paceRun{rate: r})
		}
		for i, pr := range points {
			if err := quiet(hotEnv.customerPrefix); err != nil {
				return err
			}
			pEnv, pHeaders, err := env(fmt.Sprint("PACE", i))
			if err != nil {
				return err
			}
			pp := plan(pEnv, pHeaders, oneHot, "pace", 256)
			pp.duration, pp.rate = o.paceDuration, pr.rate
			pr.stats = attack(ctx, pp, io.Discard)
			res, err := waitSettled(ctx, db, pEnv.customerPrefix, 5*time.Minute, nil)
			if err != nil {
				return err
			}
			pr.left = res.toCome
			if f, err := readPipeline(ctx, db, pEnv.customerPrefix); err == nil {
				pr.toPaid = f.toPaid
			}
			run.paces = append(run.paces, pr)
			fmt.Fprintf(out, "  pace %d/s for %s: %7.1f orders/s; checkout to PAID %s\n", pr.rate, o.paceDuration,
				perSecond(pr.stats.Placed, pr.stats.Elapsed), pr.toPaid)
		}
	}
	fmt.Fprintln(out)
	return nil
}

// sleepCtx waits d, or less when ctx ends (its error then).
func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// amqpURLOf is the AMQP_URL of a child's environment, or the service's default.
func amqpURLOf(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "AMQP_URL="); ok && v != "" {
			return v
		}
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

func countOrders(ctx context.Context, db *pgxpool.Pool, prefix string) int {
	var n int
	db.QueryRow(ctx, "SELECT count(*)::int FROM orders WHERE left(customer_id, length($1)) = $1", prefix).Scan(&n)
	return n
}

// customerHeaders signs a token per customer of the run.
func customerHeaders(o options, prefix string) ([]http.Header, error) {
	headers := make([]http.Header, o.customers)
	for i := range headers {
		tok, err := auth.Sign(o.jwtSecret, fmt.Sprintf("%s%04d", prefix, i), nil, 2*time.Hour)
		if err != nil {
			return nil, err
		}
		headers[i] = http.Header{"Content-Type": {"application/json"}, "Accept": {acceptHeader}, "Authorization": {"Bearer " + tok}}
	}
	rand.Shuffle(len(headers), func(i, j int) { headers[i], headers[j] = headers[j], headers[i] })
	return headers, nil
}

// refused counts the answers load shedding gave (429 and 503).
func refused(s *loadStats) uint64 {
	var n uint64
	for k, v := range s.Errors {
		if strings.HasPrefix(k, "HTTP 429") || strings.HasPrefix(k, "HTTP 503") {
			n += v
		}
	}
	return n
}

// scrapeMetrics reads the service's unlabelled series (and the sums and counts of its
// histograms) from /metrics.
// The relay's series: events it published, and publishes (one confirm each).
const (
	relayEvents    = "checkout_outbox_published_total"
	relayPublishes = "checkout_outbox_confirm_duration_seconds_count"
)

func scrapeMetrics(ctx context.Context, base string) map[string]float64 {
	out := map[string]float64{}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out
}

func printStrategyTables(out io.Writer, raw []rawResult, ceiling float64, runs []*strategyRun) {
	fmt.Fprintf(out, "== results (%s, %d CPUs)\n\n", time.Now().Format("2006-01-02"), runtime.NumCPU())
	fmt.Fprintf(out, "raw single-row ceiling: ")
	for i, r := range raw {
		if i > 0 {
			fmt.Fprint(out, "; ")
		}
		fmt.Fprintf(out, "%d in flight %.0f tx/s", r.inFlight, r.txPerSec)
	}
	fmt.Fprintf(out, " (ceiling %.0f tx/s)\n\n", ceiling)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "| strategy\t| in flight\t| orders/s\t| p50\t| p99\t| refused\t| retries\t| batch\t| x raw, same in flight\t| x raw ceiling\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	rawAt := map[int]float64{}
	for _, r := range raw {
		rawAt[r.inFlight] = r.txPerSec
	}
	for _, r := range runs {
		for _, h := range r.hot {
			ops := perSecond(h.stats.Placed, h.stats.Elapsed)
			batch := "-"
			if h.batchAvg > 0 {
				batch = fmt.Sprintf("%.1f", h.batchAvg)
			}
			same := "-"
			if v := rawAt[h.inFlight]; v > 0 {
				same = fmt.Sprintf("%.2fx", ops/v)
			}
			fmt.Fprintf(tw, "| %s\t| %d\t| %.0f\t| %s\t| %s\t| %d\t| %.0f\t| %s\t| %s\t| %.2fx\t|\n", r.strategy, h.inFlight, ops,
				fmtDur(h.stats.Latency.P50), fmtDur(h.stats.Latency.P99), refused(h.stats), h.retries, batch, same, ops/max(ceiling, 1))
		}
	}
	tw.Flush()
	fmt.Fprintln(out)
	printCostTable(out, ceiling, runs)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "| strategy\t| spread checkouts/s\t| p50\t| p99\t| checkout to PAID p50\t| p99\t| flash sale 400@100 on 50\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range runs {
		if r.spread == nil || r.flash == nil {
			continue
		}
		fs := fmt.Sprintf("%d orders, %d OUT_OF_STOCK, %d other", r.flash.Placed, r.flash.OutOfStock, r.flash.OtherErrors())
		fmt.Fprintf(tw, "| %s\t| %.0f\t| %s\t| %s\t| %s\t| %s\t| %s\t|\n", r.strategy, perSecond(r.spread.Placed, r.spread.Elapsed),
			fmtDur(r.spread.Latency.P50), fmtDur(r.spread.Latency.P99), fmtDur(r.toPaid.P50), fmtDur(r.toPaid.P99), fs)
	}
	tw.Flush()
	for _, r := range runs {
		for _, p := range r.paces {
			of := ""
			if p.fraction > 0 {
				of = fmt.Sprintf(" (%.0f%% of its best)", 100*p.fraction)
			}
			fmt.Fprintf(out, "\nsaga pace (%s): %d checkouts/s offered%s for %s: %.0f orders/s placed; checkout to PAID %s; %d orders still unpaid after the wait",
				r.strategy, p.rate, of, p.stats.Elapsed.Round(time.Second), perSecond(p.stats.Placed, p.stats.Elapsed), p.toPaid, p.left)
		}
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out)
}
