package node_test

import (
	"context"
	"strings"
	"testing"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// TestPgBouncer_TransactionMode_TenClientsShareTwoServerConnections_Restarts: ten clients through
// a pooler of two server connections each run a statement; the server saw at most two
// backends, every one set up by the connect query; a named entry reaches its database;
// Kill leaves no process, and Restart serves again on the same port.
func TestPgBouncer_TransactionMode_TenClientsShareTwoServerConnections_Restarts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := node.StartPgBouncer(t, node.PgBouncerOptions{Server: testutil.PostgresHostPort(t), PoolSize: 2,
		ConnectQuery: "SET statement_timeout = 1234; SET application_name = 'pooled'",
		Databases:    map[string]string{"alias": "host=127.0.0.1 port=" + strings.Split(testutil.PostgresHostPort(t), ":")[1] + " dbname=postgres"}})
	pids := map[int]bool{}
	for i := 0; i < 10; i++ {
		c := connect(t, b.URLFor("postgres")+"&default_query_exec_mode=simple_protocol")
		var pid int
		var timeout string
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid(), current_setting('statement_timeout')").Scan(&pid, &timeout); err != nil {
			t.Fatal(err)
		}
		if timeout != "1234ms" {
			t.Fatalf("statement_timeout through the pooler %q: the connect query did not run", timeout)
		}
		pids[pid] = true
	}
	if len(pids) > 2 {
		t.Fatalf("ten clients used %d server connections, the pool has 2", len(pids))
	}
	var db string
	if err := connect(t, b.URLFor("alias")+"&default_query_exec_mode=simple_protocol").QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != "postgres" {
		t.Fatalf("the alias entry reached database %q (%v), want postgres", db, err)
	}
	procs := tree(b)
	b.Kill()
	if b.Alive() {
		t.Fatal("pgbouncer alive after Kill")
	}
	if left := running(procs); len(left) > 0 {
		t.Fatalf("processes left after Kill: %v", left)
	}
	if err := b.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	var one int
	if err := connect(t, b.URLFor("postgres")+"&default_query_exec_mode=simple_protocol").QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("through the restarted pooler: %v", err)
	}
}
