package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// deadURL is an AMQP URL with a password on a loopback port nothing listens on.
func deadURL(t *testing.T) string {
	return fmt.Sprintf("amqp://guest:hunter2secret@127.0.0.1:%d/", testutil.FreePort(t))
}

// smallTopology has two quorum queues: work and dead-letter.
func smallTopology(size int) broker.Topology {
	return broker.Topology{Prefix: "t" + testutil.RandomID(4) + ".", QuorumSize: size,
		Consumers: []broker.Consumer{{Name: "c", Types: []string{"t.happened"}}}, RetryDelays: []time.Duration{time.Second}}
}

func deleteTopology(t *testing.T, topo broker.Topology) {
	t.Cleanup(func() {
		b := broker.New(testutil.AMQPURL(), topo, nil)
		b.Delete(context.Background())
		b.Close()
	})
}

func TestAMQPURL_SeveralNodes_DialsTheFirstThatAnswers(t *testing.T) {
	t.Parallel()
	topo := smallTopology(0)
	deleteTopology(t, topo)
	b := broker.New(deadURL(t)+" , "+testutil.AMQPURL(), topo, nil)
	defer b.Close()
	if err := b.Declare(context.Background()); err != nil {
		t.Fatalf("a list whose second node answers: %v", err)
	}
	e, _ := event.New("t.happened", "a", time.Now(), map[string]string{})
	if err := b.Publish(context.Background(), []event.Envelope{e}); err != nil {
		t.Fatalf("publish through the second node: %v", err)
	}
}

func TestAMQPURL_NoNodeAnswers_ErrorNamesNodesNotPasswords(t *testing.T) {
	t.Parallel()
	b := broker.New(deadURL(t)+","+deadURL(t), smallTopology(0), nil)
	defer b.Close()
	err := b.Ping(context.Background())
	if err == nil {
		t.Fatal("no node answers, yet Ping is nil")
	}
	for _, want := range []string{"node 1 of 2", "node 2 of 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "hunter2secret") {
		t.Errorf("error shows the password: %q", err)
	}
}

func TestDeclare_ExistingQueuesKeepTheirReplicationFactor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	topo := smallTopology(1)
	deleteTopology(t, topo)
	ch := testutil.AMQPChannel(t)
	// A queue of a deployment older than the setting: no replication factor at all.
	if _, err := ch.QueueDeclare(topo.DeadLetterQueue("c"), true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatal(err)
	}
	first := broker.New(testutil.AMQPURL(), topo, nil)
	if err := first.Declare(ctx); err != nil {
		t.Fatalf("declare over a queue that predates the replication factor: %v", err)
	}
	first.Close()
	// The setting changed since the queues were made (1 -> 3).
	topo.QuorumSize = 3
	again := broker.New(testutil.AMQPURL(), topo, nil)
	if err := again.Declare(ctx); err != nil {
		t.Fatalf("declare after the replication factor changed: %v", err)
	}
	again.Close()

	// Any other difference still stops the declare, as before.
	other := smallTopology(3)
	deleteTopology(t, other)
	if _, err := ch.QueueDeclare(other.Queue("c"), true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-delivery-limit": int32(3)}); err != nil {
		t.Fatal(err)
	}
	b := broker.New(testutil.AMQPURL(), other, nil)
	defer b.Close()
	var ae *amqp.Error
	if err := b.Declare(ctx); !errors.As(err, &ae) || ae.Code != amqp.PreconditionFailed {
		t.Fatalf("a queue with another delivery limit: %v, want PRECONDITION_FAILED", err)
	}
}
