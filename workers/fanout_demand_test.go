package workers_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/store"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/workers"
)

// demandRig is the partner webhooks' fan-out queue as serve wires it (bound to what the
// endpoints in a database of its own want), with nothing consuming it, so what is routed
// to it stays there to be counted.
type demandRig struct {
	t     *testing.T
	hooks *store.Webhooks
	topo  broker.Topology
	b     *broker.Broker
}

func newDemandRig(t *testing.T) *demandRig {
	db := testutil.NewDB(t)
	r := &demandRig{t: t, hooks: store.NewWebhooks(db.DB, time.Now)}
	r.topo = testutil.NewTopology(workers.WebhookConsumers()...)
	r.topo.Demand = r.hooks.Demand
	r.b = testutil.NewBroker(t, testutil.AMQPURL(), r.topo)
	r.hooks.BindWith(workers.FanOutBinder(r.b))
	return r
}

// publish publishes one order event of type typ, confirmed.
func (r *demandRig) publish(typ string) {
	r.t.Helper()
	env := event.Envelope{ID: uuid.NewString(), Type: typ, AggregateID: uuid.NewString(), OccurredAt: time.Now(), Payload: []byte(`{}`)}
	if err := r.b.Publish(context.Background(), []event.Envelope{env}); err != nil {
		r.t.Fatal(err)
	}
}

// depth is how many messages wait in consumer's queue.
func (r *demandRig) depth(consumer string) int {
	r.t.Helper()
	stats, err := r.b.QueueStats(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	for _, q := range stats {
		if q.Queue == r.topo.Queue(consumer) {
			return q.Messages
		}
	}
	r.t.Fatalf("no queue %s", r.topo.Queue(consumer))
	return 0
}

func (r *demandRig) register(events ...string) string {
	r.t.Helper()
	id := uuid.NewString()
	if _, err := r.hooks.Register(context.Background(), id, "https://partner.example/hook", events, "whsec_test"); err != nil {
		r.t.Fatal(err)
	}
	return id
}

// A shop without partner endpoints queues nothing for the webhook fan-out; an endpoint
// gets the types it wants queued from its registration on, whichever instance declares
// the topology next; a deleted one stops costing deliveries at the next Route.
func TestWebhookFanOut_QueueTakesOnlyWhatEndpointsWant(t *testing.T) {
	r := newDemandRig(t)
	ctx := context.Background()
	fanout := workers.WebhookFanOutConsumer

	r.publish(event.OrderPlaced)
	r.publish(event.OrderPaid)
	if got := r.depth(workers.PaymentConsumer); got != 1 {
		t.Fatalf("the payment queue holds %d order.placed, want 1 (the events were not routed at all)", got)
	}
	if got := r.depth(fanout); got != 0 {
		t.Fatalf("with no endpoint, the fan-out's queue holds %d events, want 0", got)
	}

	paidOnly := r.register(event.OrderPaid)
	r.publish(event.OrderPlaced)
	r.publish(event.OrderPaid)
	if got := r.depth(fanout); got != 1 {
		t.Fatalf("with an endpoint for order.paid, the fan-out's queue holds %d events, want 1 (order.paid only)", got)
	}

	// Another instance connecting declares the topology again: it binds what is wanted.
	b2 := testutil.NewBroker(t, testutil.AMQPURL(), r.topo)
	if err := b2.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	r.publish(event.OrderPlaced)
	r.publish(event.OrderPaid)
	if got := r.depth(fanout); got != 2 {
		t.Fatalf("after another instance declared the topology, the fan-out's queue holds %d events, want 2", got)
	}

	all := r.register("*")
	r.publish(event.OrderPlaced)
	r.publish(event.OrderShipped)
	if got := r.depth(fanout); got != 4 {
		t.Fatalf("with an endpoint for every type, the fan-out's queue holds %d events, want 4", got)
	}

	for _, id := range []string{paidOnly, all} {
		if _, err := r.hooks.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if told, err := r.b.Route(ctx); err != nil || !told {
		t.Fatalf("Route = %v, %v; want told", told, err)
	}
	r.publish(event.OrderPaid)
	if got := r.depth(fanout); got != 4 {
		t.Fatalf("with every endpoint deleted and the queue rerouted, it holds %d events, want still 4", got)
	}
}

// An endpoint registered while Route runs again and again is never left unbound: each
// event of its type published after its registration returned is queued for the
// fan-out, however the registration and the routes interleave.
func TestWebhookFanOut_ARegistrationNeverLosesToARouteUnderWay(t *testing.T) {
	r := newDemandRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := r.b.Route(ctx); err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	fanout := workers.WebhookFanOutConsumer
	for i := range 40 {
		before := r.depth(fanout)
		id := r.register(event.OrderPaid)
		r.publish(event.OrderPaid)
		if got := r.depth(fanout); got != before+1 {
			t.Fatalf("round %d: an order.paid published after an endpoint for it was registered was not queued for the fan-out (%d events, want %d)", i, got, before+1)
		}
		if _, err := r.hooks.Delete(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
}

// With RabbitMQ unreachable a new endpoint's types cannot be bound, so the endpoint is
// not stored (it would miss its events): the admin is told SERVICE_UNAVAILABLE, to retry.
func TestWebhookFanOut_RegisteredWithoutTheBroker_UnavailableAndNothingStored(t *testing.T) {
	db := testutil.NewDB(t)
	hooks := store.NewWebhooks(db.DB, time.Now)
	away := broker.New("amqp://guest:guest@127.0.0.1:1/", testutil.NewTopology(workers.WebhookConsumers()...), nil) // nothing listens on port 1
	defer away.Close()
	hooks.BindWith(workers.FanOutBinder(away))
	api := testutil.NewAPI(t, db, testutil.APIOptions{Webhooks: hooks})
	admin := testutil.Token(t, "ops", "admin")
	resp := api.Do(t, admin, `mutation { registerWebhook(input: {url: "http://127.0.0.1:9/hook", events: ["order.paid"]}) { secret webhook { id } } }`, nil)
	if code := resp.ErrorCode(); code != "SERVICE_UNAVAILABLE" {
		t.Fatalf("registerWebhook without the broker: code %q, want SERVICE_UNAVAILABLE (errors %v)", code, resp.Errors)
	}
	if n := api.Count(t, "SELECT count(*) FROM webhooks"); n != 0 {
		t.Fatalf("%d endpoints stored, want none", n)
	}
}

// Instances starting together each declare the topology (four connections each): none of
// them binds the fan-out's queue to a type nobody wants.
func TestWebhookFanOut_InstancesConnectingAtOnce_NoneBindsWhatNobodyWants(t *testing.T) {
	r := newDemandRig(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := broker.New(testutil.AMQPURL(), r.topo, nil)
			defer b.Close()
			if err := b.Declare(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	r.publish(event.OrderPlaced)
	r.publish(event.OrderPaid)
	if got := r.depth(workers.PaymentConsumer); got != 1 {
		t.Fatalf("the payment queue holds %d order.placed, want 1", got)
	}
	if got := r.depth(workers.WebhookFanOutConsumer); got != 0 {
		t.Fatalf("after eight connections declared at once with no endpoint, the fan-out's queue holds %d events, want 0", got)
	}
}
