package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/checkout-backend/checkout/internal/node"
)

func TestEtcd_ThreeMembers_OneKilled_StillServes(t *testing.T) {
	t.Parallel()
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := node.StartEtcdCluster(t, node.EtcdOptions{})
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range c.Members {
				t.Logf("%s log:\n%s", m.Name, node.LogTail(m.LogPath(), 20))
			}
		}
	})
	if len(c.Members) != 3 || len(c.Endpoints()) != 3 {
		t.Fatalf("%d members, endpoints %v; want 3", len(c.Members), c.Endpoints())
	}
	t.Logf("3 members healthy in %s: %v", time.Since(began).Round(time.Millisecond), c.Endpoints())
	get := func(m *node.EtcdMember, key string) (string, error) {
		out, err := m.Ctl(ctx, "get", key, "--print-value-only")
		return strings.TrimSpace(string(out)), err
	}
	if _, err := c.Ctl(ctx, "put", "k1", "all three"); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.Members {
		if v, err := get(m, "k1"); err != nil || v != "all three" {
			t.Fatalf("%s: get k1 = %q, %v", m.Name, v, err)
		}
	}

	victim := c.Members[0]
	procs := tree(victim)
	victim.Kill()
	if victim.Alive() || victim.Healthy(ctx) {
		t.Fatal("member alive after Kill")
	}
	if left := running(procs); len(left) > 0 {
		t.Fatalf("processes of the killed member left: %v", left)
	}
	if _, err := victim.Ctl(ctx, "get", "k1"); err == nil {
		t.Fatal("the killed member answered")
	}
	// The two others are a quorum: they still take writes and serve reads.
	for i, m := range c.Members[1:] {
		if _, err := m.Ctl(ctx, "put", "k2", "two of three"); err != nil {
			t.Fatalf("%s with one member down: %v", m.Name, err)
		}
		if v, err := get(c.Members[2-i], "k2"); err != nil || v != "two of three" {
			t.Fatalf("%s: get k2 = %q, %v", c.Members[2-i].Name, v, err)
		}
	}

	restarted := time.Now()
	if err := victim.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := victim.Restart(ctx); err == nil {
		t.Fatal("Restart of a running member succeeded")
	}
	// Back on its own data directory and ports, it caught up with what it missed.
	if v, err := get(victim, "k2"); err != nil || v != "two of three" {
		t.Fatalf("restarted %s: get k2 = %q, %v", victim.Name, v, err)
	}
	t.Logf("killed member healthy again %s after Restart; test took %s", time.Since(restarted).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

func TestPatroni_ThreeNodes_StrictSync_LeaderKilled_StandbyPromotedWithin15s_OldLeaderRejoins(t *testing.T) {
	t.Parallel()
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	etcd := node.StartEtcdCluster(t, node.EtcdOptions{})
	pc := node.StartPatroniCluster(t, 3, etcd, node.PatroniOptions{Synchronous: true})
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range pc.Nodes {
				t.Logf("%s log:\n%s", p.Name, node.LogTail(p.LogPath(), 60))
			}
		}
	})
	t.Logf("etcd x3 and patroni x3 running in %s", time.Since(began).Round(time.Millisecond))

	// One leader, two replicas streaming from it, one of them the synchronous standby that
	// Patroni recorded in etcd (the one it may promote) and the leader waits for.
	var leader *node.Patroni
	var syncName string
	waitUntil(t, ctx, time.Minute, "one leader, two streaming replicas, one of them sync", func() bool {
		leader, syncName = pc.Leader(ctx), ""
		if leader == nil || leader.Role(ctx) != "master" {
			return false
		}
		for _, p := range pc.Nodes {
			if p == leader {
				continue
			}
			st, err := p.Status(ctx)
			if err != nil || st.Role != "replica" || st.State != "running" {
				return false
			}
			if st.SyncStandby {
				syncName = p.Name
			}
		}
		var streaming int
		var names, synced string
		err := query(ctx, leader.URL(), func(c *pgx.Conn) error {
			return c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'streaming'),
				coalesce(min(application_name) FILTER (WHERE sync_state = 'sync'), ''),
				current_setting('synchronous_standby_names') FROM pg_stat_replication`).Scan(&streaming, &synced, &names)
		})
		return err == nil && streaming == 2 && syncName != "" && synced == syncName && names == syncName
	})
	t.Logf("leader %s, synchronous standby %s (%s after start)", leader.Name, syncName, time.Since(began).Round(time.Millisecond))
	if err := query(ctx, leader.URL(), func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'acknowledged before the kill')")
		return err
	}); err != nil {
		t.Fatal(err)
	}

	old := leader
	pm := old.PostmasterPid()
	if pm == 0 {
		t.Fatal("the leader's postmaster is not found")
	}
	procs := append([]int{pm}, node.Tree(pm)...)
	killed := time.Now()
	old.KillAll()
	if old.Alive() || old.PostmasterPid() != 0 {
		t.Fatalf("after KillAll: patroni alive %v, postmaster %d", old.Alive(), old.PostmasterPid())
	}
	if left := running(procs); len(left) > 0 {
		t.Fatalf("PostgreSQL processes of the killed leader left: %v", left)
	}

	// Another member becomes the leader (/primary answers 200) and takes a write.
	var next *node.Patroni
	var primaryAfter, writeAfter time.Duration
	waitUntil(t, ctx, 30*time.Second, "a new leader that takes writes", func() bool {
		if next == nil {
			for _, p := range pc.Nodes {
				if p != old && p.IsPrimary(ctx) {
					next, primaryAfter = p, time.Since(killed)
				}
			}
			if next == nil {
				return false
			}
		}
		// With strict synchronous mode the commit returns only once a standby has it;
		// an attempt cut short may have committed locally, hence the upsert.
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		err := query(wctx, next.URL(), func(c *pgx.Conn) error {
			_, err := c.Exec(wctx, "INSERT INTO t VALUES (2, 'after the failover') ON CONFLICT (id) DO UPDATE SET v = excluded.v")
			return err
		})
		writeAfter = time.Since(killed)
		return err == nil
	})
	t.Logf("failover: %s answered 200 on /primary %.1fs after the kill, and took a write at %.1fs", next.Name, primaryAfter.Seconds(), writeAfter.Seconds())
	if writeAfter > 15*time.Second {
		t.Errorf("writes resumed %.1fs after the leader was killed, want within 15s", writeAfter.Seconds())
	}
	if next.Name != syncName {
		t.Errorf("promoted %s, but the synchronous standby was %s", next.Name, syncName)
	}
	var v string
	if err := query(ctx, next.URL(), func(c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT v FROM t WHERE id = 1").Scan(&v)
	}); err != nil || v != "acknowledged before the kill" {
		t.Fatalf("row committed before the kill on the new leader: %q, %v", v, err)
	}

	// The old leader comes back and, with nothing done by hand, streams from the new one.
	restarted := time.Now()
	rctx, rcancel := context.WithTimeout(ctx, time.Minute)
	defer rcancel()
	if err := old.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, rctx, time.Minute, "the old leader streaming from the new one", func() bool {
		if old.Role(ctx) != "replica" {
			return false
		}
		var inRecovery bool
		var rows int
		if err := query(ctx, old.URL(), func(c *pgx.Conn) error {
			return c.QueryRow(ctx, "SELECT pg_is_in_recovery(), (SELECT count(*) FROM t WHERE id IN (1, 2))").Scan(&inRecovery, &rows)
		}); err != nil || !inRecovery || rows != 2 {
			return false
		}
		var state string
		err := query(ctx, next.URL(), func(c *pgx.Conn) error {
			return c.QueryRow(ctx, "SELECT state FROM pg_stat_replication WHERE application_name = $1", old.Name).Scan(&state)
		})
		return err == nil && state == "streaming"
	})
	t.Logf("rejoin: old leader %s streams from %s as a replica %.1fs after Restart; test took %s",
		old.Name, next.Name, time.Since(restarted).Seconds(), time.Since(began).Round(time.Millisecond))
	if err := query(ctx, old.URL(), func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "INSERT INTO t VALUES (3, 'x')")
		return err
	}); err == nil {
		t.Error("the rejoined old leader accepted a write")
	}
}

// query connects to url, runs f and closes the connection.
func query(ctx context.Context, url string, f func(*pgx.Conn) error) error {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, url)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return f(c)
}

// waitUntil checks cond every 100ms until it holds, failing t after timeout.
func waitUntil(t *testing.T, ctx context.Context, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("no %s within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
