package node_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/testutil/testcert"
)

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestPostgres_StartConnectStop_LeavesNoProcess(t *testing.T) {
	t.Parallel()
	n := node.StartPostgres(t, node.PostgresOptions{})
	c := connect(t, n.URL())
	var one int
	if err := c.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	if n.Status() != "ready" {
		t.Fatalf("status %q, want ready", n.Status())
	}
	procs := tree(n)
	if len(procs) < 3 {
		t.Fatalf("expected a postmaster and its backends, found %v", procs)
	}
	n.Stop()
	if n.Alive() {
		t.Fatal("node still alive after Stop")
	}
	if left := running(procs); len(left) > 0 {
		t.Fatalf("processes left after Stop: %v", left)
	}
}

func TestPostgres_SynchronousStandby_ReplicatesAndRefusesWrites_KilledPrimaryLeavesNoProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	primary := node.StartPostgres(t, node.PostgresOptions{Name: "primary", SynchronousStandbys: "standby"})
	standby := node.StartPostgres(t, node.PostgresOptions{Name: "standby", StandbyOf: primary})
	if standby.Status() != "standby" {
		t.Fatalf("standby status %q", standby.Status())
	}
	p := connect(t, primary.URL())
	// The primary lists the standby as its synchronous one.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		var state string
		err := p.QueryRow(wctx, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'").Scan(&state)
		if err == nil && state == "sync" {
			break
		}
		if wctx.Err() != nil {
			t.Fatalf("standby never became synchronous (last: %q, %v)", state, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := p.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'acknowledged')"); err != nil {
		t.Fatal(err)
	}
	s := connect(t, standby.URL())
	var v string
	for {
		err := s.QueryRow(wctx, "SELECT v FROM t WHERE id = 1").Scan(&v)
		if err == nil {
			break
		}
		if wctx.Err() != nil {
			t.Fatalf("row never reached the standby: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := s.Exec(ctx, "INSERT INTO t VALUES (2, 'x')"); err == nil {
		t.Fatal("a hot standby accepted a write")
	}

	procs := tree(primary)
	primary.Kill()
	if primary.Alive() {
		t.Fatal("primary alive after Kill")
	}
	if left := running(procs); len(left) > 0 {
		t.Fatalf("processes of the killed primary left: %v", left)
	}
}

func TestPostgres_TLS_RequiresAClientCertificateFromTheCA(t *testing.T) {
	t.Parallel()
	pki := testcert.New(t, "postgres")
	ca, srvCert, srvKey, cliCert, cliKey := pki.CA, pki.ServerCert, pki.ServerKey, pki.ClientCert, pki.ClientKey
	stranger := testcert.New(t, "postgres")
	strangerCert, strangerKey := stranger.ClientCert, stranger.ClientKey
	n := node.StartPostgres(t, node.PostgresOptions{TLS: &node.PostgresTLS{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: ca, ClientCert: "verify-full"}})
	ctx := context.Background()
	good := n.URL() + "&sslmode=verify-full&sslrootcert=" + ca + "&sslcert=" + cliCert + "&sslkey=" + cliKey
	c := connect(t, strings.Replace(good, "sslmode=require&", "", 1))
	var ssl bool
	if err := c.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl); err != nil || !ssl {
		t.Fatalf("connection not over TLS: %v %v", ssl, err)
	}
	for name, url := range map[string]string{
		"plaintext":                 strings.Replace(n.URL(), "sslmode=require", "sslmode=disable", 1),
		"no client cert":            n.URL() + "&sslrootcert=" + ca,
		"client cert of another CA": n.URL() + "&sslcert=" + strangerCert + "&sslkey=" + strangerKey,
	} {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := pgx.Connect(cctx, url)
		cancel()
		if err == nil {
			c.Close(ctx)
			t.Errorf("%s: connected, want refused", name)
		}
	}
}

func TestPostgres_KillRestart_SameNodeKeepsCommittedRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	n := node.StartPostgres(t, node.PostgresOptions{})
	port, url := n.Port, n.URL()
	c := connect(t, url)
	if _, err := c.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := n.Restart(ctx); err == nil {
		t.Fatal("Restart of a running node succeeded")
	}
	n.Kill()
	if n.Alive() {
		t.Fatal("node alive after Kill")
	}
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if n.Status() != "ready" || n.Port != port {
		t.Fatalf("after Restart: status %q, port %d (was %d)", n.Status(), n.Port, port)
	}
	var rows int
	if err := connect(t, url).QueryRow(ctx, "SELECT count(*) FROM t").Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("after a crash and Restart the table has %d rows (%v), want the committed 1", rows, err)
	}
}
