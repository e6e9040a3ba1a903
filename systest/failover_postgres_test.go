package systest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/jackc/pgx/v5"

	"github.com/checkout-backend/checkout/internal/checkout"
	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// waitSyncStandby waits until the leader has a synchronous standby that etcd's sync key
// names too (only that one may be promoted), and returns it.
func waitSyncStandby(t *testing.T, c *node.PatroniCluster, leader *node.Patroni) *node.Patroni {
	t.Helper()
	ctx := context.Background()
	var sync *node.Patroni
	testutil.Eventually(t, 60*time.Second, "a synchronous standby", func() bool {
		for _, p := range c.Nodes {
			if p == leader {
				continue
			}
			if st, err := p.Status(ctx); err == nil && st.SyncStandby && st.Role == "replica" {
				conn, err := pgx.Connect(ctx, leader.URL())
				if err != nil {
					return false
				}
				var state string
				conn.QueryRow(ctx, "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1", p.Name).Scan(&state)
				conn.Close(ctx)
				if state == "sync" {
					sync = p
					return true
				}
			}
		}
		return false
	})
	return sync
}

// TestPostgresFailover_LeaderKilledMidSale_PatroniPromotes_NoAcknowledgedOrderLost runs
// the stack on three PostgreSQL nodes under Patroni (strict synchronous mode, three etcd
// members), its database URL listing them with target_session_attrs=read-write. Each
// member's replication goes through a proxy of its own. Mid-sale, the standbys' replies
// to the leader are cut, so commits hang after the standbys have them: those clients get
// no answer. The leader's Patroni and postmaster are SIGKILLed together; nothing in the
// test promotes anything: Patroni promotes the synchronous standby once the dead
// leader's key expires. Checkouts resume; every acknowledged order is on the new leader;
// an order committed without an answer is found again by retrying its idempotency key,
// not placed twice; nothing is oversold; the relay and the payment worker carry on
// (every order PAID, one charge each).
func TestPostgresFailover_LeaderKilledMidSale_PatroniPromotes_NoAcknowledgedOrderLost(t *testing.T) {
	testutil.Slow(t) // etcd and PostgreSQL nodes of its own
	t.Parallel()
	ctx := context.Background()
	etcd := node.StartEtcdCluster(t, node.EtcdOptions{})
	toxi := testutil.NewToxiproxy(t)
	var mu sync.Mutex
	replication := map[string]*toxiclient.Proxy{}
	cluster := node.StartPatroniCluster(t, 3, etcd, node.PatroniOptions{Synchronous: true,
		ConnectVia: func(name, addr string) (string, error) {
			port, err := node.FreePort()
			if err != nil {
				return "", err
			}
			p, err := toxi.Client.CreateProxy("replication-"+name, fmt.Sprintf("127.0.0.1:%d", port), addr)
			if err != nil {
				return "", err
			}
			mu.Lock()
			replication[name] = p
			mu.Unlock()
			return p.Listen, nil
		}})
	var leader *node.Patroni
	testutil.Eventually(t, 60*time.Second, "a leader", func() bool { leader = cluster.Leader(ctx); return leader != nil })
	syncStandby := waitSyncStandby(t, cluster, leader)

	s := testutil.NewStack(t, testutil.StackOptions{DatabaseURL: cluster.URLFor("postgres")})
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
	// The standbys still receive and apply WAL but their flush reports no longer reach
	// the leader: a commit from now on waits for an acknowledgement that never comes.
	if _, err := replication[leader.Name].AddToxic("hold-replies", "timeout", "upstream", 1, toxiclient.Attributes{"timeout": 0}); err != nil {
		t.Fatal(err)
	}
	probe := make(chan answer, 1)
	proberToken := testutil.Token(t, "prober")
	go func() {
		a, _ := sh.buy("prober", proberToken, "probe", "PLENTY")
		probe <- a
	}()
	sc, err := pgx.Connect(context.Background(), syncStandby.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(context.Background())
	var probeOrder string
	testutil.Eventually(t, 30*time.Second, "the probe order committed on the synchronous standby while its client waits", func() bool {
		err := sc.QueryRow(context.Background(), fmt.Sprintf("SELECT order_id::text FROM %s.idempotency_keys WHERE customer_id = 'prober' AND key = 'probe'", s.DB.Schema)).Scan(&probeOrder)
		return err == nil
	})
	sc.Close(context.Background())
	sh.resume() // these checkouts queue behind the probe and are in flight at the kill

	killed := time.Now()
	leader.KillAll()
	var promotedNode *node.Patroni
	testutil.Eventually(t, 60*time.Second, "Patroni to promote a standby", func() bool {
		promotedNode = cluster.Leader(ctx)
		return promotedNode != nil
	})
	promoted := time.Now()
	if promotedNode != syncStandby {
		t.Errorf("Patroni promoted %s, not the synchronous standby %s", promotedNode.Name, syncStandby.Name)
	}
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
	pc, err := pgx.Connect(context.Background(), promotedNode.URL())
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
	t.Logf("leader's Patroni and postmaster killed; Patroni's promotion took %s; first checkout acknowledged %s after promotion (%s after the kill); %d orders; %d failed attempts (all retried with their key)",
		promoted.Sub(killed).Round(time.Millisecond), first.Sub(promoted).Round(time.Millisecond), first.Sub(killed).Round(time.Millisecond),
		len(answers), inWindow)
}
