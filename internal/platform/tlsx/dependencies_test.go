package tlsx_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/platform/tlsx"
	"github.com/checkout-backend/checkout/internal/store"

	"github.com/checkout-backend/checkout/internal/testutil"
)

// The store reaches a PostgreSQL that requires TLS and a client certificate whose CN is
// the user (pg_hba clientcert=verify-full), with sslmode=verify-full: the server's
// certificate is verified against sslrootcert and its name, and refused otherwise.
func TestPostgres_VerifyFullWithClientCertificate(t *testing.T) {
	t.Parallel()
	p, stranger := newPKI(t, "db ca"), newPKI(t, "another ca")
	// The server's certificate names localhost only: verify-full to 127.0.0.1 is refused
	// (the name is checked), verify-ca is not.
	srvCert, srvKey := p.issue("pg-server", tlsx.Leaf{CommonName: "localhost", DNSNames: []string{"localhost"}, Server: true})
	n := node.StartPostgres(t, node.PostgresOptions{TLS: &node.PostgresTLS{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: p.CA, ClientCert: "verify-full"}})
	cert, key := p.client("pg-client", "postgres")
	otherUser, otherUserKey := p.client("pg-other", "checkout")
	strangerCert, strangerKey := stranger.client("pg-stranger", "postgres")
	dsn := func(host, mode, root, cert, key string) string {
		s := fmt.Sprintf("postgres://postgres@%s:%d/postgres?sslmode=%s", host, n.Port, mode)
		for k, v := range map[string]string{"sslrootcert": root, "sslcert": cert, "sslkey": key} {
			if v != "" {
				s += "&" + k + "=" + v
			}
		}
		return s
	}
	ctx := context.Background()
	for _, url := range []string{dsn("localhost", "verify-full", p.CA, cert, key), dsn("127.0.0.1", "verify-ca", p.CA, cert, key)} {
		db, err := store.Open(ctx, url, store.Options{MaxOpenConns: 1})
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		var ssl bool
		var cn string
		err = db.QueryRowContext(ctx, "SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &cn)
		db.Close()
		if err != nil || !ssl || cn != "/CN=postgres" {
			t.Fatalf("%s: ssl=%v client_dn=%q (%v), want TLS with CN=postgres", url, ssl, cn, err)
		}
	}
	for name, url := range map[string]string{
		"plain text":                         dsn("localhost", "disable", "", "", ""),
		"no client certificate":              dsn("localhost", "verify-full", p.CA, "", ""),
		"server not trusted (another CA)":    dsn("localhost", "verify-full", stranger.CA, cert, key),
		"verify-ca, server not trusted":      dsn("127.0.0.1", "verify-ca", stranger.CA, cert, key),
		"client certificate of another CA":   dsn("localhost", "verify-full", p.CA, strangerCert, strangerKey),
		"client certificate of another user": dsn("localhost", "verify-full", p.CA, otherUser, otherUserKey),
		"server name not in its certificate": dsn("127.0.0.1", "verify-full", p.CA, cert, key),
	} {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		db, err := store.Open(cctx, url, store.Options{MaxOpenConns: 1})
		cancel()
		if err == nil {
			db.Close()
			t.Errorf("%s: connected, want refused", name)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}
}

// The broker adapter publishes to and consumes from a RabbitMQ node that only speaks
// amqps and requires a client certificate (verify_peer, fail_if_no_peer_cert), with the
// AMQP_TLS_* files added to its URL; without a certificate, or trusting another CA, it
// is refused.
func TestBroker_AMQPS_PublishesAndConsumesWithAClientCertificate(t *testing.T) {
	testutil.Slow(t) // a private RabbitMQ or PostgreSQL node of its own
	t.Parallel()
	p, stranger := newPKI(t, "mq ca"), newPKI(t, "another ca")
	srvCert, srvKey := p.server("mq-server")
	n := node.StartRabbit(t, node.RabbitOptions{TLS: &node.RabbitTLS{CertFile: srvCert, KeyFile: srvKey, CAFile: p.CA, Only: true}})
	cert, key := p.client("mq-client", "checkout")
	topo := broker.Topology{Prefix: "tls.", Consumers: []broker.Consumer{{Name: "probe", Types: []string{"order.placed"}}},
		RetryDelays: []time.Duration{100 * time.Millisecond}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	url, err := tlsx.AMQPURL(n.TLSURL(), tlsx.Files{CA: p.CA, Cert: cert, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	b := broker.New(url, topo, quiet())
	defer b.Close()
	if err := b.Declare(ctx); err != nil {
		t.Fatalf("amqps with a client certificate: %v", err)
	}
	env, err := event.New("order.placed", "order-1", time.Now(), map[string]string{"over": "tls"})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, []event.Envelope{env}); err != nil {
		t.Fatalf("publish over amqps: %v", err)
	}
	got := make(chan event.Envelope, 1)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b.Consume(cctx, "probe", broker.ConsumeOptions{}, func(_ context.Context, e event.Envelope) error {
			select {
			case got <- e:
			default:
			}
			return nil
		})
	}()
	select {
	case e := <-got:
		if e.ID != env.ID || string(e.Payload) != `{"over":"tls"}` {
			t.Fatalf("consumed %+v, want %+v", e, env)
		}
	case <-ctx.Done():
		t.Fatal("the published event was never consumed")
	}
	stop()
	<-done

	for name, f := range map[string]tlsx.Files{
		"no client certificate":           {CA: p.CA},
		"server not trusted (another CA)": {CA: stranger.CA, Cert: cert, Key: key},
	} {
		url, err := tlsx.AMQPURL(n.TLSURL(), f)
		if err != nil {
			t.Fatal(err)
		}
		other := broker.New(url, topo, quiet())
		err = other.Declare(ctx)
		other.Close()
		if err == nil {
			t.Errorf("%s: connected, want refused", name)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}
}
