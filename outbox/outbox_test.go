package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"

	"github.com/checkout-backend/checkout/internal/event"
	clog "github.com/checkout-backend/checkout/internal/platform/log"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/outbox"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func insert(t *testing.T, db bun.IDB, aggregate string, n int) []string {
	t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		env, err := event.New("test.event", aggregate, t0, map[string]int{"n": i})
		if err != nil {
			t.Fatal(err)
		}
		if err := outbox.Insert(context.Background(), db, env); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.ID)
	}
	return ids
}

func eventIDs(rows []outbox.Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.EventID
	}
	return out
}

func rowIDs(rows []outbox.Row) []int64 {
	out := make([]int64, len(rows))
	for i, r := range rows {
		out[i] = r.ID
	}
	return out
}

func TestClaim_OneEventPerAggregateUntilPublished(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	a := insert(t, db, "order-a", 3)
	b := insert(t, db, "order-b", 1)

	first, err := outbox.Claim(ctx, db, "r1", t0, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventIDs(first); len(got) != 2 || got[0] != a[0] || got[1] != b[0] {
		t.Fatalf("claimed %v, want the first event of each order (%s, %s)", got, a[0], b[0])
	}
	// Another relay finds nothing: a[1] waits for a[0], which is leased.
	if again, _ := outbox.Claim(ctx, db, "r2", t0, time.Minute, 10); len(again) != 0 {
		t.Fatalf("a second relay claimed %v while earlier events are unpublished", eventIDs(again))
	}
	if err := outbox.MarkPublished(ctx, db, rowIDs(first), t0); err != nil {
		t.Fatal(err)
	}
	next, _ := outbox.Claim(ctx, db, "r2", t0, time.Minute, 10)
	if got := eventIDs(next); len(got) != 1 || got[0] != a[1] {
		t.Fatalf("after publishing: %v, want %s", got, a[1])
	}
}

func TestClaim_LeaseExpiresAndReleaseFreesAtOnce(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	insert(t, db, "o", 1)
	rows, _ := outbox.Claim(ctx, db, "dead-relay", t0, 30*time.Second, 10)
	if len(rows) != 1 {
		t.Fatal("nothing claimed")
	}
	if got, _ := outbox.Claim(ctx, db, "r2", t0.Add(29*time.Second), 30*time.Second, 10); len(got) != 0 {
		t.Fatal("claimed while leased")
	}
	// The first relay died: after its lease another relay takes the row.
	got, _ := outbox.Claim(ctx, db, "r2", t0.Add(31*time.Second), 30*time.Second, 10)
	if len(got) != 1 {
		t.Fatal("the row of a dead relay stayed claimed after its lease")
	}
	// r2's publish fails: it releases at once, with the error recorded.
	if err := outbox.Release(ctx, db, rowIDs(got), "r2", "broker gone: tok_visa"); err != nil {
		t.Fatal(err)
	}
	var last string
	var attempts int
	if err := db.NewRaw("SELECT last_error, attempts FROM outbox").Scan(ctx, &last, &attempts); err != nil {
		t.Fatal(err)
	}
	if attempts != 1 || last != "broker gone: [REDACTED]" {
		t.Fatalf("attempts %d last_error %q", attempts, last)
	}
	if got, _ := outbox.Claim(ctx, db, "r3", t0.Add(31*time.Second), 30*time.Second, 10); len(got) != 1 {
		t.Fatal("a released row is not claimable at once")
	}
	// A stale relay cannot release another relay's claim.
	if err := outbox.Release(ctx, db, rowIDs(got), "r2", "late"); err != nil {
		t.Fatal(err)
	}
	if again, _ := outbox.Claim(ctx, db, "r4", t0.Add(32*time.Second), 30*time.Second, 10); len(again) != 0 {
		t.Fatal("r2 released r3's claim")
	}
}

func TestClaim_ConcurrentRelaysTakeDisjointRows(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t, storeOptions(16))
	ctx := context.Background()
	var all []string
	for i := 0; i < 200; i++ {
		all = append(all, insert(t, db, fmt.Sprint("order-", i), 1)...)
	}
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	for r := 0; r < 8; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			token := fmt.Sprint("relay-", r)
			for {
				rows, err := outbox.Claim(ctx, db, token, t0, time.Minute, 7)
				if err != nil {
					t.Error(err)
					return
				}
				if len(rows) == 0 {
					return
				}
				mu.Lock()
				for _, id := range eventIDs(rows) {
					if other, dup := seen[id]; dup {
						t.Errorf("%s claimed by %s and %s", id, other, token)
					}
					seen[id] = token
				}
				mu.Unlock()
				if err := outbox.MarkPublished(ctx, db, rowIDs(rows), t0); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != len(all) {
		t.Fatalf("%d of %d rows claimed", len(seen), len(all))
	}
}

// publisher records what it published and fails or stalls on demand.
type publisher struct {
	mu      sync.Mutex
	got     []event.Envelope
	failN   int           // fail the next failN calls
	stall   chan struct{} // when set, block until ctx ends
	batches int
}

func (p *publisher) Publish(ctx context.Context, envs []event.Envelope) error {
	p.mu.Lock()
	p.batches++
	if p.failN > 0 {
		p.failN--
		p.mu.Unlock()
		return errors.New("broker unavailable")
	}
	stall := p.stall
	p.mu.Unlock()
	if stall != nil {
		close(stall)
		<-ctx.Done()
		return ctx.Err()
	}
	p.mu.Lock()
	p.got = append(p.got, envs...)
	p.mu.Unlock()
	return nil
}

func (p *publisher) published() []event.Envelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]event.Envelope(nil), p.got...)
}

func TestRelay_FailuresRetried_EveryEventOnceInOrder(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	want := map[string][]string{}
	for i := 0; i < 5; i++ {
		agg := fmt.Sprint("order-", i)
		want[agg] = insert(t, db, agg, 4)
	}
	pub := &publisher{failN: 2}
	relay, err := outbox.NewRelay(db.DB, pub, time.Now, outbox.RelayOptions{Batch: 3, Poll: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- relay.Run(ctx) }()
	testutil.Eventually(t, 20*time.Second, "20 events published", func() bool { return len(pub.published()) >= 20 })
	cancel()
	<-done
	got := map[string][]string{}
	for _, env := range pub.published() {
		got[env.AggregateID] = append(got[env.AggregateID], env.ID)
	}
	for agg, ids := range want {
		if fmt.Sprint(got[agg]) != fmt.Sprint(ids) {
			t.Errorf("%s published %v, want %v (once each, in order)", agg, got[agg], ids)
		}
	}
	if n := testutil.Count(t, db, "SELECT count(*) FROM outbox WHERE published_at IS NULL OR claimed_until IS NOT NULL"); n != 0 {
		t.Fatalf("%d rows left unpublished or claimed", n)
	}
}

func TestRelay_StalledBrokerReleasesTheBatchAtTheDeadline(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	insert(t, db, "o", 1)
	pub := &publisher{stall: make(chan struct{})}
	relay, err := outbox.NewRelay(db.DB, pub, time.Now, outbox.RelayOptions{Batch: 100, Poll: time.Second, PublishTimeout: 200 * time.Millisecond, Lease: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := relay.RelayOnce(context.Background()); errc <- err }()
	select {
	case err := <-errc:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("RelayOnce: %v, want the publish deadline", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("RelayOnce never returned from a stalled broker")
	}
	// The row is released (not held for the hour-long lease): the next relay takes it.
	rows, err := outbox.Claim(context.Background(), db, "next", time.Now(), time.Minute, 10)
	if err != nil || len(rows) != 1 {
		t.Fatalf("after the deadline: %d claimable (%v), want 1", len(rows), err)
	}
}

func TestRelay_WokenAfterCommit_InProcessAndByNotify(t *testing.T) {
	t.Parallel()
	// Polling once an hour: once idle, only a Notifier can wake the relay in time:
	// this process's (in memory), or another process's (its NOTIFY on this schema's
	// channel).
	db := testutil.NewDB(t)
	other := db.Via(t, testutil.PostgresHostPort(t), storeOptions(2)) // another process's pool, same schema
	// The local notifier's own NOTIFY cannot go out (its pool is closed): only its
	// in-memory wake-up can reach the relay.
	closed := db.Via(t, testutil.PostgresHostPort(t), storeOptions(1))
	closed.Close()
	local, remote := outbox.NewNotifier(closed.DB), outbox.NewNotifier(other.DB)
	insert(t, db, "first", 1)
	pub := &publisher{}
	relay, err := outbox.NewRelay(db.DB, pub, time.Now, outbox.RelayOptions{Batch: 100, Poll: time.Hour, Notifier: local})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go relay.Run(ctx)
	testutil.Eventually(t, 10*time.Second, "the first drain", func() bool { return len(pub.published()) == 1 })
	testutil.Eventually(t, 10*time.Second, "the relay listening", func() bool {
		return testutil.Count(t, db, "SELECT count(*) FROM pg_stat_activity WHERE query = ?", `LISTEN "`+outbox.Channel(db.Schema)+`"`) == 1
	})
	second := insert(t, db, "second", 1)
	local.Notify()
	testutil.Eventually(t, 10*time.Second, "the second event published on the in-process wake-up", func() bool {
		got := pub.published()
		return len(got) == 2 && got[1].ID == second[0]
	})
	third := insert(t, other, "third", 1)
	remote.Notify()
	testutil.Eventually(t, 10*time.Second, "the third event published on another process's NOTIFY", func() bool {
		got := pub.published()
		return len(got) == 3 && got[2].ID == third[0]
	})
}

// TestClock_IsADependency: the relay and the retry scheduler refuse to be made without
// a clock, and what they write is at the clock they were given: a batch's published_at,
// a retry's available_at (the clock's now plus the broker's delay).
func TestClock_IsADependency(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	if _, err := outbox.NewRelay(db.DB, &publisher{}, nil, outbox.RelayOptions{Batch: 1, Poll: time.Second}); err == nil {
		t.Fatal("NewRelay took a nil clock")
	}
	func() {
		defer func() {
			if r := recover(); r != "outbox: Scheduler with a nil clock" {
				t.Fatalf("Scheduler with a nil clock: recovered %v, want its panic", r)
			}
		}()
		outbox.Scheduler(db.DB, nil)
	}()

	at := t0.Add(time.Hour) // far from the wall clock, after the rows' t0
	clock := func() time.Time { return at }
	insert(t, db, "o1", 1)
	insert(t, db, "o2", 1)
	relay, err := outbox.NewRelay(db.DB, &publisher{}, clock, outbox.RelayOptions{Batch: 10, Poll: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := relay.RelayOnce(ctx); err != nil || n != 2 {
		t.Fatalf("relayed %d, %v; want 2", n, err)
	}
	if n := testutil.Count(t, db, "SELECT count(*) FROM outbox WHERE published_at = ?", at); n != 2 {
		t.Fatalf("%d rows published at the relay's clock %s, want 2", n, at)
	}

	env, err := event.New("test.event", "o", t0, map[string]int{"n": 9})
	if err != nil {
		t.Fatal(err)
	}
	if err := outbox.Scheduler(db.DB, clock)(ctx, "c", env, 2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := testutil.Count(t, db, "SELECT count(*) FROM outbox WHERE destination = 'c' AND available_at = ?", at.Add(5*time.Second)); n != 1 {
		t.Fatalf("%d retries due at the scheduler's clock plus the delay (%s), want 1", n, at.Add(5*time.Second))
	}
}

func TestBacklog(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	insert(t, db, "o", 2)
	n, age, err := outbox.Backlog(context.Background(), db, t0.Add(90*time.Second))
	if err != nil || n != 2 || age != 90*time.Second {
		t.Fatalf("backlog %d, age %s, %v", n, age, err)
	}
}

func TestInsert_KeepsHeadersAndCorrelationID(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	env, _ := event.New("test.event", "o", t0, map[string]string{"k": "v"})
	env.Headers["traceparent"] = "00-abc"
	ctx := clogContext("req-42")
	if err := outbox.Insert(ctx, db, env); err != nil {
		t.Fatal(err)
	}
	rows, _ := outbox.Claim(context.Background(), db, uuid.NewString(), t0, time.Minute, 1)
	if len(rows) != 1 {
		t.Fatal("not claimed")
	}
	got := rows[0].Envelope()
	keys := make([]string, 0, len(got.Headers))
	for k := range got.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if got.Headers["traceparent"] != "00-abc" || got.Headers[outbox.CorrelationHeader] != "req-42" || string(got.Payload) != `{"k": "v"}` || !got.OccurredAt.Equal(t0) {
		t.Fatalf("round trip: %+v (headers %v)", got, keys)
	}
}

func storeOptions(conns int) store.Options { return store.Options{MaxOpenConns: conns} }

func clogContext(id string) context.Context {
	return clog.WithCorrelationID(context.Background(), id)
}

// TestClaim_StaysCheapWithABacklogAndStaleStatistics: an outbox analyzed while quiet
// (every row published) tells the planner that no row is unpublished; a flash sale then
// writes a backlog in seconds, long before the next ANALYZE. The claim must still look up
// each candidate's earlier events through the (aggregate_id, id) index, not scan the
// whole backlog once per candidate: that made each claim of 100 rows read the backlog
// 100 times, and the relay fell to a few events per second with 70,000 waiting.
func TestClaim_StaysCheapWithABacklogAndStaleStatistics(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	// Quiet: 300 published rows, analyzed.
	if _, err := db.ExecContext(ctx, `INSERT INTO outbox (event_id, type, aggregate_id, payload, headers, created_at, published_at)
		SELECT gen_random_uuid(), 'order.placed', 'old-' || g, '{}', '{}', now(), now() FROM generate_series(1, 300) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, "ANALYZE outbox"); err != nil {
		t.Fatal(err)
	}
	// The sale: 10,000 orders with two events each, unpublished, no ANALYZE since.
	const orders = 10000
	if _, err := db.ExecContext(ctx, `INSERT INTO outbox (event_id, type, aggregate_id, payload, headers, created_at)
		SELECT gen_random_uuid(), e.type, 'order-' || g, '{}', '{}', now()
		FROM generate_series(1, ?) g, (VALUES (1, 'order.placed'), (2, 'order.paid')) e(n, type) ORDER BY g, e.n`, orders); err != nil {
		t.Fatal(err)
	}

	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		rows, err := outbox.Claim(ctx, tx, "r1", time.Now(), time.Minute, 100)
		if err != nil {
			return err
		}
		if len(rows) != 100 {
			return fmt.Errorf("claimed %d rows, want 100", len(rows))
		}
		for _, r := range rows {
			if r.Type != "order.placed" {
				return fmt.Errorf("claimed %s of %s before its order.placed was published", r.Type, r.AggregateID)
			}
		}
		// What this transaction's statements read from the outbox's indexes and heap.
		var idxRead, seqRead int64
		if err := tx.NewRaw(`SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(indexrelid)), 0)::bigint FROM pg_index WHERE indrelid = 'outbox'::regclass`).Scan(ctx, &idxRead); err != nil {
			return err
		}
		if err := tx.NewRaw(`SELECT coalesce(seq_tup_read, 0)::bigint FROM pg_stat_xact_user_tables WHERE relid = 'outbox'::regclass`).Scan(ctx, &seqRead); err != nil {
			return err
		}
		t.Logf("one claim of 100 from a backlog of %d: %d index entries and %d heap rows read", 2*orders, idxRead, seqRead)
		// A claim reads its candidates and one short index range per candidate: a few
		// hundred entries. Reading the backlog once per candidate is two million.
		if idxRead+seqRead > 5000 {
			return fmt.Errorf("one claim of 100 read %d index entries and %d heap rows of a %d-row backlog: it scans the backlog per candidate", idxRead, seqRead, 2*orders)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNotifier_OneChannelPerSchema: the wake-up after a commit is NOTIFY "outbox.<schema>",
// so two deployments sharing a database in different schemas never wake each other's
// relays (and the README's channel name is the one used).
func TestNotifier_OneChannelPerSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, neighbour := testutil.NewDB(t), testutil.NewDB(t)
	listen := func(channel string) *pgx.Conn {
		t.Helper()
		c, err := pgx.Connect(ctx, testutil.DatabaseURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		if _, err := c.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
			t.Fatal(err)
		}
		return c
	}
	own, other := listen("outbox."+db.Schema), listen("outbox."+neighbour.Schema)
	insert(t, db, "o", 1)
	outbox.NewNotifier(db.DB).Notify()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := own.WaitForNotification(wctx)
	if err != nil {
		t.Fatalf("no NOTIFY on outbox.%s after a commit: %v", db.Schema, err)
	}
	if n.Channel != "outbox."+db.Schema {
		t.Fatalf("notified on %q", n.Channel)
	}
	// The neighbour's channel stays quiet (a notification is queued to every listener
	// at the commit that sends it, so this one would already be waiting).
	qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer qcancel()
	if n, err := other.WaitForNotification(qctx); err == nil {
		t.Fatalf("the neighbouring schema's relay was woken on %q", n.Channel)
	}
}

// TestNotifier_RelayInProcess_NoNotifySent: a process whose own relay is woken in memory
// sends no NOTIFY (its relay publishes what it wrote): the commit costs no extra round
// trip. A listener on the channel gets the test's own marker first, not an empty NOTIFY.
func TestNotifier_RelayInProcess_NoNotifySent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testutil.NewDB(t)
	listener, err := pgx.Connect(ctx, testutil.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close(context.Background()) })
	channel := pgx.Identifier{outbox.Channel(db.Schema)}.Sanitize()
	if _, err := listener.Exec(ctx, "LISTEN "+channel); err != nil {
		t.Fatal(err)
	}
	local := outbox.NewNotifier(db.DB)
	pub := &publisher{}
	relay, err := outbox.NewRelay(db.DB, pub, time.Now, outbox.RelayOptions{Batch: 100, Poll: time.Hour, Notifier: local})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	insert(t, db, "first", 1)
	go relay.Run(rctx) // subscribes before its first drain
	testutil.Eventually(t, 10*time.Second, "the first drain", func() bool { return len(pub.published()) == 1 })
	second := insert(t, db, "second", 1)
	local.Notify()
	testutil.Eventually(t, 10*time.Second, "the second event published on the in-process wake-up", func() bool {
		got := pub.published()
		return len(got) == 2 && got[1].ID == second[0]
	})
	// A NOTIFY the notifier sent would have been queued long before this marker.
	time.Sleep(100 * time.Millisecond)
	if _, err := db.ExecContext(ctx, "NOTIFY "+channel+", 'marker'"); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Payload != "marker" {
		t.Fatalf("the notifier sent a NOTIFY (payload %q) though its relay runs in this process", n.Payload)
	}
}

// TestRelay_Linger_EventsCommittedMeanwhileShareOnePublish: a relay that found company
// (its last batch held more than one event) waits OUTBOX_LINGER after a wake-up before it
// claims, so the events committed in that time go out in one publish (one confirm)
// instead of one each.
func TestRelay_Linger_EventsCommittedMeanwhileShareOnePublish(t *testing.T) {
	t.Parallel()
	db, local, pub := lingeringRelay(t, 500*time.Millisecond, "first", "second") // a first batch of two: it lingers next
	testutil.Eventually(t, 10*time.Second, "the first drain", func() bool { return len(pub.published()) == 2 })

	insert(t, db, "a", 1)
	local.Notify()
	time.Sleep(100 * time.Millisecond) // well inside the linger
	if n := len(pub.published()); n != 2 {
		t.Fatalf("%d events published 100ms after the wake-up, want still 2: the relay did not linger", n)
	}
	insert(t, db, "b", 1)
	local.Notify()
	insert(t, db, "c", 1)
	local.Notify()
	testutil.Eventually(t, 10*time.Second, "the three events published", func() bool { return len(pub.published()) == 5 })
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if pub.batches != 2 {
		t.Fatalf("%d publishes for the first drain and three events committed within the linger, want 2", pub.batches)
	}
}

// TestRelay_Linger_ALoneEventIsNotHeldBack: in a quiet shop the relay publishes one
// event at a time, and then it does not linger: an order's event leaves at once.
func TestRelay_Linger_ALoneEventIsNotHeldBack(t *testing.T) {
	t.Parallel()
	db, local, pub := lingeringRelay(t, 10*time.Second, "first") // a first batch of one
	testutil.Eventually(t, 10*time.Second, "the first drain", func() bool { return len(pub.published()) == 1 })
	for i, agg := range []string{"a", "b"} {
		insert(t, db, agg, 1)
		local.Notify()
		// Far less than the 10s linger: the relay claimed at once.
		testutil.Eventually(t, 3*time.Second, "the lone event published without the linger", func() bool { return len(pub.published()) == 2+i })
	}
}

// lingeringRelay runs a relay with linger, woken only by its notifier, over a database
// holding one event of each of the aggregates first (its first drain, claimed at once).
func lingeringRelay(t *testing.T, linger time.Duration, first ...string) (*testutil.DB, *outbox.Notifier, *publisher) {
	t.Helper()
	db := testutil.NewDB(t)
	local := outbox.NewNotifier(db.DB)
	pub := &publisher{}
	relay, err := outbox.NewRelay(db.DB, pub, time.Now, outbox.RelayOptions{Batch: 100, Poll: time.Hour, Notifier: local, Linger: linger})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, agg := range first {
		insert(t, db, agg, 1)
	}
	go relay.Run(ctx)
	return db, local, pub
}
