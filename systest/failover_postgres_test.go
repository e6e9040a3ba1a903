package systest

import (
	"context"
	"fmt"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/jackc/pgx/v5"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// waitSynchronous waits until primary streams to standby as its synchronous standby.
func waitSynchronous(t *testing.T, primary *node.Postgres, standby string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, primary.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	testutil.Eventually(t, 30*time.Second, standby+" synchronous", func() bool {
		var state string
		c.QueryRow(ctx, "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1", standby).Scan(&state)
		return state == "sync"
	})
}

// TestPostgresFailover_PrimaryKilledMidSale_NoAcknowledgedOrderLost runs the stack on
// a primary and a synchronous standby, both listed in its database URL with
// target_session_attrs=read-write. Mid-sale, the standby's replies to the primary are
// cut (toxiproxy), so commits hang after the standby has them: those clients get no
// answer. The primary is SIGKILLed and the standby promoted. Checkouts resume; every
// acknowledged order is on the promoted node; an order committed without an answer is
// found again by retrying its idempotency key, not placed twice; nothing is oversold;
// the relay and the payment worker carry on (every order PAID, one charge each).
func TestPostgresFailover_PrimaryKilledMidSale_NoAcknowledgedOrderLost(t *testing.T) {
	testutil.Slow(t) // a private RabbitMQ or PostgreSQL node of its own
	t.Parallel()
	primary := node.StartPostgres(t, node.PostgresOptions{Name: "primary", SynchronousStandbys: "standby"})
	replication := testutil.NewToxiproxy(t).Proxy(t, "replication", primary.HostPort())
	standby := node.StartPostgres(t, node.PostgresOptions{Name: "standby", StandbyOf: primary, PrimaryAddr: replication.Listen})
	waitSynchronous(t, primary, "standby")

	// The standby is listed first: target_session_attrs=read-write is what finds the primary.
	s := testutil.NewStack(t, testutil.StackOptions{DatabaseURL: node.MultiHostURL("postgres", standby, primary)})
	stock := map[string]int{"FLASH": 15, "PLENTY": 100000}
	for sku, n := range stock {
		s.Product(t, sku, 1500, map[string]int{"w": n})
	}
	sh := open(t, s, 6, "FLASH", "PLENTY")
	sh.waitAcknowledged(20, time.Time{}, 60*time.Second)

	// Quiet the sale (clients paused, every order paid, the outbox drained) so that the
	// probe below is the one transaction that commits while the standby's replies are
	// held: a transaction that wrote the outbox (whose trigger NOTIFYs) holds the notify
	// queue's lock through its wait for the standby, and any other would take its place.
	sh.pause()
	answers, _ := sh.results()
	for _, a := range answers {
		if a.orderID != "" {
			s.WaitStatus(t, a.orderID, checkout.StatusPaid, 60*time.Second)
		}
	}
	testutil.Eventually(t, 30*time.Second, "outbox drained", func() bool {
		return s.Count(t, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
	})
	// And every sale folded into inventory: a fold that committed while the replies are
	// held would wait on the standby holding the inventory row, and the probe would time
	// out on its lock instead of committing (seen once on a loaded machine).
	testutil.Eventually(t, 30*time.Second, "sales folded", func() bool {
		return s.Count(t, "SELECT count(*) FROM stock_moves") == 0
	})
	// The standby still receives and applies WAL but its flush reports no longer reach
	// the primary: a commit from now on waits for an acknowledgement that never comes.
	if _, err := replication.AddToxic("hold-replies", "timeout", "upstream", 1, toxiclient.Attributes{"timeout": 0}); err != nil {
		t.Fatal(err)
	}
	probe := make(chan answer, 1)
	proberToken := testutil.Token(t, "prober")
	go func() {
		a, _ := sh.buy("prober", proberToken, "probe", "PLENTY")
		probe <- a
	}()
	sc, err := pgx.Connect(context.Background(), standby.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(context.Background())
	var probeOrder string
	testutil.Eventually(t, 30*time.Second, "the probe order committed on the standby while its client waits", func() bool {
		err := sc.QueryRow(context.Background(), fmt.Sprintf("SELECT order_id::text FROM %s.idempotency_keys WHERE customer_id = 'prober' AND key = 'probe'", s.DB.Schema)).Scan(&probeOrder)
		return err == nil
	})
	sc.Close(context.Background())
	sh.resume() // these checkouts queue behind the probe and are in flight at the kill

	killed := time.Now()
	primary.Kill()
	if err := standby.Promote(context.Background()); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	sh.waitAcknowledged(20, promoted, 60*time.Second)
	sh.close()

	a := <-probe
	sh.record(a)
	switch {
	case a.failures == 0:
		t.Errorf("the probe checkout got its answer at once; the test meant it to be lost")
	case a.orderID != probeOrder:
		t.Errorf("retrying the probe's key answered order %q, want the order committed before the failover, %s", a.orderID, probeOrder)
	}
	answers, failures := sh.results()
	// Every acknowledged order is on the promoted node (read there directly).
	pc, err := pgx.Connect(context.Background(), standby.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(context.Background())
	for _, a := range answers {
		if a.orderID == "" {
			continue
		}
		var n int
		if err := pc.QueryRow(context.Background(), fmt.Sprintf("SELECT count(*) FROM %s.orders WHERE id = $1", s.DB.Schema), a.orderID).Scan(&n); err != nil || n != 1 {
			t.Errorf("acknowledged order %s (%s) is not on the promoted node (%v)", a.orderID, a.key, err)
		}
	}
	checkSaleSettles(t, s, answers, stock)

	first := firstAfter(answers, promoted)
	inWindow := 0
	for _, f := range failures {
		if !f.Before(killed) && !f.After(first) {
			inWindow++
		}
	}
	t.Logf("primary killed; promotion took %s; first checkout acknowledged %s after promotion (%s after the kill); %d orders; %d failed attempts (all retried with their key)",
		promoted.Sub(killed).Round(time.Millisecond), first.Sub(promoted).Round(time.Millisecond), first.Sub(killed).Round(time.Millisecond),
		len(answers), inWindow)
}
