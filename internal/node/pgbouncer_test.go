package node_test

import (
	"context"
	"testing"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// TestPgBouncer_TransactionMode_TenClientsShareTwoServerConnections: ten clients through
// a pooler of two server connections each run a statement; the server saw at most two
// backends, every one set up by the connect query; Kill leaves no process.
func TestPgBouncer_TransactionMode_TenClientsShareTwoServerConnections(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := node.StartPgBouncer(t, node.PgBouncerOptions{Server: testutil.PostgresHostPort(t), PoolSize: 2,
		ConnectQuery: "SET statement_timeout = 1234; SET application_name = 'pooled'"})
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
	procs := tree(b)
	b.Kill()
	if b.Alive() {
		t.Fatal("pgbouncer alive after Kill")
	}
	if left := running(procs); len(left) > 0 {
		t.Fatalf("processes left after Kill: %v", left)
	}
}
