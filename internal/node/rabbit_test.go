package node_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/testutil/testcert"

	"github.com/checkout-backend/checkout/internal/testutil"
)

func dial(t *testing.T, url string) *amqp.Channel {
	t.Helper()
	c, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func TestRabbit_StartConnectStop_LeavesNoProcess(t *testing.T) {
	testutil.Slow(t) // a private RabbitMQ or PostgreSQL node of its own
	t.Parallel()
	start := time.Now()
	n := node.StartRabbit(t, node.RabbitOptions{})
	t.Logf("one node answered AMQP after %s", time.Since(start).Round(10*time.Millisecond))
	ch := dial(t, n.URL())
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Publish("", q.Name, false, false, amqp.Publishing{Body: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	d, ok, err := ch.Get(q.Name, true)
	for err == nil && !ok {
		time.Sleep(10 * time.Millisecond)
		d, ok, err = ch.Get(q.Name, true)
	}
	if err != nil || string(d.Body) != "hello" {
		t.Fatalf("got %q, %v", d.Body, err)
	}
	procs := tree(n)
	n.Stop()
	if n.Alive() {
		t.Fatal("node alive after Stop")
	}
	if left := running(procs); len(left) > 0 {
		t.Fatalf("processes left after Stop: %v", left)
	}
}

func TestRabbitCluster_ThreeNodes_QuorumQueueOnThreeMembersSurvivesAKill(t *testing.T) {
	testutil.Slow(t) // a private RabbitMQ or PostgreSQL node of its own
	t.Parallel()
	start := time.Now()
	c := node.StartRabbitCluster(t, 3, node.RabbitOptions{})
	t.Logf("three-node cluster formed after %s", time.Since(start).Round(10*time.Millisecond))
	ctx := context.Background()
	ch := dial(t, c.Nodes[0].URL())
	if _, err := ch.QueueDeclare("orders", true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-quorum-initial-group-size": int32(3)}); err != nil {
		t.Fatal(err)
	}
	out, err := c.Nodes[1].Ctl(ctx, "list_queues", "name", "members", "--formatter", "json", "--quiet")
	if err != nil {
		t.Fatal(err)
	}
	var queues []struct {
		Name    string   `json:"name"`
		Members []string `json:"members"`
	}
	if err := json.Unmarshal(out, &queues); err != nil {
		t.Fatalf("list_queues: %v: %s", err, out)
	}
	var members []string
	for _, q := range queues {
		if q.Name == "orders" {
			members = q.Members
		}
	}
	slices.Sort(members)
	want := []string{c.Nodes[0].Name, c.Nodes[1].Name, c.Nodes[2].Name}
	slices.Sort(want)
	if !slices.Equal(members, want) {
		t.Fatalf("quorum queue members %v, want %v", members, want)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	dc, err := ch.PublishWithDeferredConfirm("", "orders", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("order-1")})
	if err != nil || !dc.Wait() {
		t.Fatalf("publish not confirmed: %v", err)
	}

	procs := tree(c.Nodes[0])
	c.Nodes[0].Kill()
	if left := running(procs); len(left) > 0 {
		t.Fatalf("processes of the killed node left: %v", left)
	}
	// The two survivors hold a majority: the confirmed message is still there.
	ch2 := dial(t, c.Nodes[2].URL())
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		d, ok, err := ch2.Get("orders", true)
		if err == nil && ok {
			if string(d.Body) != "order-1" {
				t.Fatalf("got %q", d.Body)
			}
			break
		}
		if err != nil { // a channel closed while the queue elects a new leader
			ch2 = dial(t, c.Nodes[2].URL())
		}
		if wctx.Err() != nil {
			t.Fatalf("the message never came back from the survivors: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRabbit_TLS_RequiresAClientCertificate(t *testing.T) {
	testutil.Slow(t) // a private RabbitMQ or PostgreSQL node of its own
	t.Parallel()
	pki := testcert.New(t, "client")
	n := node.StartRabbit(t, node.RabbitOptions{TLS: &node.RabbitTLS{CertFile: pki.ServerCert, KeyFile: pki.ServerKey, CAFile: pki.CA, Only: true}})
	if n.Port != 0 {
		t.Fatalf("TLS-only node has a plain port %d", n.Port)
	}
	caPEM, err := os.ReadFile(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(pki.ClientCert, pki.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := amqp.DialTLS(n.TLSURL(), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("amqps with a client certificate: %v", err)
	}
	c.Close()
	if c, err := amqp.DialTLS(n.TLSURL(), &tls.Config{RootCAs: roots, ServerName: "localhost"}); err == nil {
		c.Close()
		t.Fatal("amqps without a client certificate was accepted")
	}
}
