// Command bench is the load generator of the checkout backend (`make bench`, `make soak`).
//
// By default it creates its own database (checkout_bench, dropped and recreated on every
// run) on the PostgreSQL server of DATABASE_URL, builds ./cmd/checkout, migrates the
// database and runs `checkout serve` as a child process on a free loopback port. With
// -url it targets an already running service instead (then -database-url names that
// service's database and -jwt-secret its JWT_SECRET).
//
// For each selected workload it sets up a catalog through the GraphQL API with an admin
// token, fires `checkout` mutations at it through a vegeta.Attacker (a fresh body with a
// unique idempotency key per request, customers drawn from pre-signed tokens), then
// prints one block of figures: requests, checkouts/s, req/s, p50/p95/p99 latency, orders
// placed, OUT_OF_STOCK answers, other errors by kind, and the integrity check read back
// from the database (no inventory row with reserved > on_hand, no SKU with more units in
// live orders than its initial stock, reserved + sold == ordered). The exit status is
// non-zero when that check fails.
//
// After each attack it waits (at most -settle) until every order's payment landed, then
// reads the asynchronous side back from the database: the outbox relay's publish lag and
// rate, the end-to-end lag from an order.placed event to the payment consumer's inbox,
// and the checkout-to-PAID time.
//
// The fanout workload is no attack: it places a few orders, waits until they are PAID,
// connects -subscribers WebSocket clients (graphql-transport-ws, a partner token each)
// to orderStatusChanged of those orders, ships them, and measures the latency from each
// order's updatedAt to each subscriber's receipt of the SHIPPED update. A subscriber
// that connected but missed its update fails the run, as an oversell does.
//
// The service the bench starts uses the bench database's name as its AMQP_PREFIX, so its
// exchange and queues are its own: another service on the same broker (`make run`) never
// takes the bench's messages. They are deleted before the service starts and once it
// stopped.
//
// Measurements hang off two registries: workloads (workload.go) and probes (probe.go);
// a probe runs around each workload's attack and adds a section to its Report. A
// workload with a run function (fanout) replaces the attack and the probes, and makes
// its own Report.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/config"
)

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/checkout?sslmode=disable"

// options are the command-line flags.
type options struct {
	workloads   []string
	duration    time.Duration
	requests    uint64
	concurrency int
	rate        int
	timeout     time.Duration
	soak        bool
	progress    time.Duration
	customers   int
	seed        uint64
	settle      time.Duration // how long to wait after an attack for the payments to land

	subscribers  int // fanout: WebSocket subscribers
	fanoutOrders int // fanout: orders they follow

	// The strategies suite (the default of make bench; strategies.go).
	suite        string
	strategies   []string
	inFlight     []int
	hotDuration  time.Duration
	rawDuration  time.Duration
	paceDuration time.Duration
	paceRates    []int
	paceAt       []float64
	// asUsersRun starts the service with its own defaults (no bench overrides);
	// serviceEnv adds to its environment.
	asUsersRun bool
	serviceEnv map[string]string

	url         string // a running service; "" starts one
	databaseURL string
	jwtSecret   string
	benchDB     string
	bin         string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	workloadList := fs.String("workload", "", "comma-separated workloads to run, in order: "+strings.Join(workloadNames(), ", ")+
		"\n(default all; with -soak: spread)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "attack duration per workload (with -soak: 10m); 0 with -requests: no time limit")
	fs.Uint64Var(&o.requests, "requests", 0, "stop each workload after this many requests (0: run for -duration)")
	fs.IntVar(&o.concurrency, "concurrency", 64, "maximum requests in flight")
	fs.IntVar(&o.rate, "rate", 0, "requests per second; 0: as fast as -concurrency allows (with -soak: 50)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.BoolVar(&o.soak, "soak", false, "soak test: 10 minutes at a moderate rate (explicit -duration, -rate, -workload win)")
	fs.DurationVar(&o.progress, "progress", 0, "print progress every interval during an attack (0: off; with -soak: 30s)")
	fs.IntVar(&o.customers, "customers", 1000, "distinct customer tokens per workload")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the random item picks (0: random)")
	fs.DurationVar(&o.settle, "settle", 20*time.Second, "after an attack, wait at most this long for every order's payment to land\n(the outbox and payment figures cover only what landed)")
	fs.IntVar(&o.subscribers, "subscribers", 1000, "fanout: WebSocket subscribers (graphql-transport-ws), spread evenly over -fanout-orders")
	fs.IntVar(&o.fanoutOrders, "fanout-orders", 10, fmt.Sprintf("fanout: orders the subscribers follow (1 to %d)", fanoutStock))
	fs.StringVar(&o.url, "url", "", "base URL of a running service (loopback only), e.g. http://127.0.0.1:8080;\nempty: build and start one on a bench database")
	fs.StringVar(&o.databaseURL, "database-url", "", "PostgreSQL URL (default $DATABASE_URL or "+defaultDatabaseURL+");\nwithout -url: the server the bench database is made on; with -url: the service's database")
	fs.StringVar(&o.jwtSecret, "jwt-secret", "", "with -url: the service's JWT_SECRET (default $JWT_SECRET, else the development default)")
	fs.StringVar(&o.benchDB, "bench-db", "checkout_bench", "name of the database the bench drops and recreates (without -url)")
	fs.StringVar(&o.bin, "bin", "", "a prebuilt checkout binary (default: go build ./cmd/checkout)")
	fs.StringVar(&o.suite, "suite", "", "strategies (the default): the raw single-row ceiling, then every reservation strategy at\n-in-flight buyers on one hot SKU, the spread workload, the flash sale at defaults and the saga's pace;\nworkloads: the -workload list (the default with -workload or -soak)")
	strategyList := fs.String("strategies", "batch,lock,optimistic,redis", "strategies suite: the reservation strategies to run")
	inFlightList := fs.String("in-flight", "1,4,64,256,1000", "strategies suite: buyers in flight on the hot SKU (1: one buyer placing orders one after another)")
	fs.DurationVar(&o.hotDuration, "hot-duration", 8*time.Second, "strategies suite: attack duration per in-flight level")
	fs.DurationVar(&o.rawDuration, "raw-duration", 5*time.Second, "strategies suite: duration of each raw ceiling run")
	paceRates := fs.String("pace-rate", "800", "strategies suite: also run the saga's pace at these checkouts/s (comma-separated), after the -pace-at fractions")
	paceAt := fs.String("pace-at", "0.8", "strategies suite: the saga's pace is run at these fractions of the first strategy's best orders/s")
	fs.DurationVar(&o.paceDuration, "pace", time.Minute, "strategies suite: how long the first strategy runs at each -pace-at rate for checkout-to-PAID (0: skip)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.suite == "" {
		o.suite = "strategies"
		if set["workload"] || o.soak {
			o.suite = "workloads"
		}
	}
	if o.suite != "strategies" && o.suite != "workloads" {
		return o, fmt.Errorf("-suite %q: want strategies or workloads", o.suite)
	}
	for _, s := range strings.Split(*strategyList, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.strategies = append(o.strategies, s)
		}
	}
	var err error
	if o.inFlight, err = parseList(*inFlightList, func(n int) bool { return n >= 1 }); err != nil || len(o.inFlight) == 0 {
		return o, fmt.Errorf("-in-flight %q: want positive numbers", *inFlightList)
	}
	if o.paceRates, err = parseList(*paceRates, func(n int) bool { return n >= 1 }); err != nil {
		return o, fmt.Errorf("-pace-rate %q: want checkouts per second such as 800", *paceRates)
	}
	if o.paceAt, err = parseList(*paceAt, func(f float64) bool { return f > 0 && f <= 2 }); err != nil {
		return o, fmt.Errorf("-pace-at %q: want fractions such as 0.8", *paceAt)
	}

	if o.soak {
		if !set["duration"] {
			o.duration = 10 * time.Minute
		}
		if !set["rate"] {
			o.rate = 50
		}
		if !set["progress"] {
			o.progress = 30 * time.Second
		}
		if !set["workload"] {
			// The flash sale sells out within seconds; a long run of it measures
			// little but OUT_OF_STOCK answers.
			*workloadList = "spread"
		}
	}
	if *workloadList == "" {
		*workloadList = strings.Join(workloadNames(), ",")
	}
	for _, n := range strings.Split(*workloadList, ",") {
		if n = strings.TrimSpace(n); n == "" {
			continue
		}
		if lookupWorkload(n) == nil {
			return o, fmt.Errorf("unknown workload %q (have: %s)", n, strings.Join(workloadNames(), ", "))
		}
		o.workloads = append(o.workloads, n)
	}
	if set["requests"] && !set["duration"] {
		o.duration = 0 // a request count alone is not cut short by the default duration
	}
	switch {
	case len(o.workloads) == 0:
		return o, errors.New("no workload selected")
	case o.concurrency < 1:
		return o, errors.New("-concurrency must be at least 1")
	case o.rate < 0:
		return o, errors.New("-rate must not be negative")
	case o.duration < 0:
		return o, errors.New("-duration must not be negative")
	case o.duration == 0 && o.requests == 0:
		return o, errors.New("need a -duration or a -requests count")
	case o.customers < 1:
		return o, errors.New("-customers must be at least 1")
	case o.timeout <= 0:
		return o, errors.New("-timeout must be positive")
	case o.settle < 0:
		return o, errors.New("-settle must not be negative")
	case o.subscribers < 1:
		return o, errors.New("-subscribers must be at least 1")
	case o.fanoutOrders < 1 || o.fanoutOrders > fanoutStock:
		return o, fmt.Errorf("-fanout-orders must be 1 to %d", fanoutStock)
	}

	if o.databaseURL == "" {
		o.databaseURL = os.Getenv("DATABASE_URL")
	}
	if o.databaseURL == "" {
		o.databaseURL = defaultDatabaseURL
	}
	if err := checkLoopbackDatabase(o.databaseURL); err != nil {
		return o, err
	}
	if o.url != "" {
		if set["bench-db"] || set["bin"] {
			return o, errors.New("-bench-db and -bin only apply without -url")
		}
		if err := checkLoopbackURL(o.url); err != nil {
			return o, err
		}
		o.url = strings.TrimRight(o.url, "/")
		if o.jwtSecret == "" {
			o.jwtSecret = os.Getenv("JWT_SECRET")
		}
		if o.jwtSecret == "" {
			o.jwtSecret = config.DevJWTSecret // what the service itself defaults to
		}
	} else {
		if set["jwt-secret"] {
			return o, errors.New("-jwt-secret only applies with -url (the bench sets its own service's secret)")
		}
		if !validDBName(o.benchDB) {
			return o, fmt.Errorf("-bench-db %q: want a lower-case identifier", o.benchDB)
		}
		o.jwtSecret = randomHex(32)
	}
	if o.seed == 0 {
		o.seed = randomUint64()
	}
	return o, nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// run is main without os.Exit, so that every deferred clean-up (the child service above
// all) runs on every path.
func run(args []string) int {
	opts, err := parseFlags(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if opts.suite == "strategies" {
		if err := runStrategySuite(ctx, opts, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		fmt.Println("bench: OK")
		return 0
	}
	reports, err := bench(ctx, opts, os.Stdout)
	failed := false
	for _, r := range reports {
		if len(r.Failures) > 0 {
			failed = true
		}
	}
	switch {
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	case failed:
		fmt.Println("bench: FAILED (see the integrity figures above)")
		return 1
	default:
		fmt.Println("bench: OK")
		return 0
	}
}

// bench runs the selected workloads against a service (started here unless -url) and
// prints a report after each. It returns the reports made so far even on error.
func bench(ctx context.Context, opts options, out io.Writer) ([]*Report, error) {
	runID := randomHex(3)
	if slices.Contains(opts.workloads, fanout.name) {
		// Now, so that the service started below inherits the limit too. The fanout
		// reports the limit in force.
		_, _ = raiseFileLimit(fanoutFiles(opts.subscribers))
	}
	target := opts.url
	dbURL := opts.databaseURL
	if target == "" {
		svc, err := startLocalService(ctx, opts, out)
		if err != nil {
			return nil, err
		}
		defer svc.stop(out)
		target, dbURL = svc.baseURL, svc.databaseURL
	} else {
		fmt.Fprintf(out, "bench: target %s (database %s)\n", target, describeDB(dbURL))
	}

	db, err := openDB(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()

	admin, err := newGraphQLClient(target, opts.jwtSecret, "bench-"+runID+"-admin", []string{"admin"}, time.Hour)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "bench: run %s: workloads %s; %s; concurrency %d; rate %s; seed %d\n\n",
		runID, strings.Join(opts.workloads, ","), limitText(opts), opts.concurrency, rateText(opts.rate), opts.seed)

	var reports []*Report
	for i, name := range opts.workloads {
		if ctx.Err() != nil {
			return reports, errors.New("interrupted")
		}
		w := lookupWorkload(name)
		r, err := runWorkload(ctx, runEnv{
			opts:           opts,
			target:         target,
			db:             db,
			admin:          admin,
			workload:       w,
			prefix:         fmt.Sprintf("B%s-%s", runID, w.short),
			customerPrefix: fmt.Sprintf("bench-%s-%s-", runID, w.name),
			seed:           opts.seed + uint64(i),
		})
		if r != nil {
			reports = append(reports, r)
			r.Print(out)
		}
		if err != nil {
			return reports, fmt.Errorf("workload %s: %w", name, err)
		}
	}
	if ctx.Err() != nil {
		return reports, errors.New("interrupted")
	}
	return reports, nil
}

func limitText(o options) string {
	switch {
	case o.requests > 0 && o.duration > 0:
		return fmt.Sprintf("%d requests or %s per workload", o.requests, o.duration)
	case o.requests > 0:
		return fmt.Sprintf("%d requests per workload", o.requests)
	default:
		return fmt.Sprintf("%s per workload", o.duration)
	}
}

func rateText(rate int) string {
	if rate == 0 {
		return "unbounded"
	}
	return fmt.Sprintf("%d/s", rate)
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomUint64() uint64 {
	var b [8]byte
	rand.Read(b[:])
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	if v == 0 {
		v = 1
	}
	return v
}

// parseList reads a comma-separated flag value of numbers, skipping empty items; an item
// that does not parse or that ok refuses is an error.
func parseList[T int | float64](value string, ok func(T) bool) ([]T, error) {
	var out []T
	for _, item := range strings.Split(value, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		var v T
		if _, err := fmt.Sscan(item, &v); err != nil || !ok(v) {
			return nil, fmt.Errorf("bad item %q", item)
		}
		out = append(out, v)
	}
	return out, nil
}
