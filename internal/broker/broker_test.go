package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/testutil"
	"github.com/checkout-backend/checkout/workers"
)

// deployment is the topology one deployment of the service declares.
func deployment(prefix string, delays ...time.Duration) broker.Topology {
	return broker.Topology{Prefix: prefix, Consumers: workers.DeploymentConsumers(true), RetryDelays: delays}
}

func newBroker(t testing.TB, url string, topo broker.Topology) *broker.Broker {
	t.Helper()
	b := broker.New(url, topo, nil)
	t.Cleanup(func() {
		b.Delete(context.Background())
		b.Close()
	})
	return b
}

func env(t testing.TB, id string) event.Envelope {
	t.Helper()
	e, err := event.New("test.event", "agg-"+id, time.Now(), map[string]string{"n": id})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestTopology_AtMost12QueuesPerDeployment(t *testing.T) {
	t.Parallel()
	if n := len(deployment("x.").Queues()); n > 12 {
		t.Fatalf("%d queues per deployment, want at most 12", n)
	}
}

func TestTwentyDeployments_OneBroker_AllReady(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	node := node.StartRabbit(t, node.RabbitOptions{})
	ctx := context.Background()
	start := time.Now()
	for i := 0; i < 20; i++ {
		b := broker.New(node.URL(), deployment(fmt.Sprintf("d%02d.", i), time.Second), nil)
		if err := b.Declare(ctx); err != nil {
			t.Fatalf("deployment %d: %v", i, err)
		}
		b.Close()
	}
	declared := time.Since(start)
	// Every deployment is ready, and the broker still answers a new connection.
	for i := 0; i < 20; i++ {
		b := broker.New(node.URL(), deployment(fmt.Sprintf("d%02d.", i), time.Second), nil)
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := b.Ping(pctx)
		cancel()
		b.Close()
		if err != nil {
			t.Fatalf("deployment %d not ready: %v", i, err)
		}
	}
	out, err := node.Ctl(ctx, "list_queues", "-q", "name")
	if err != nil {
		t.Fatalf("rabbitmqctl: %v", err)
	}
	queues := 0
	for _, l := range splitLines(string(out)) {
		if l != "" && l != "name" {
			queues++
		}
	}
	if want := 20 * len(deployment("").Queues()); queues != want {
		t.Fatalf("%d queues on the broker, want %d", queues, want)
	}
	t.Logf("20 deployments, %d quorum queues, declared in %s", queues, declared.Round(time.Millisecond))
}

func splitLines(s string) []string {
	var out []string
	line := ""
	for _, r := range s {
		if r == '\n' {
			out = append(out, line)
			line = ""
			continue
		}
		line += string(r)
	}
	return append(out, line)
}

// recorder is a RetryScheduler that records what it is asked and republishes the retry
// at once (as the relay would when it is due).
type recorder struct {
	mu    sync.Mutex
	b     *broker.Broker
	calls []scheduled
}

type scheduled struct {
	attempt int
	wait    time.Duration
}

func (r *recorder) schedule(ctx context.Context, consumer string, e event.Envelope, attempt int, delay time.Duration) error {
	r.mu.Lock()
	r.calls = append(r.calls, scheduled{attempt, delay})
	r.mu.Unlock()
	e.Destination = consumer
	e.Headers = map[string]string{event.AttemptHeader: fmt.Sprint(attempt)}
	return r.b.Publish(ctx, []event.Envelope{e})
}

func (r *recorder) snapshot() []scheduled {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]scheduled(nil), r.calls...)
}

func TestRestart_OtherRetrySettings_ReadyAndNewDelaysUsed(t *testing.T) {
	t.Parallel()
	prefix := "t" + testutil.RandomID(4) + "."
	ctx := context.Background()
	old := newBroker(t, testutil.AMQPURL(), deployment(prefix, 10*time.Second, time.Minute))
	if err := old.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	old.Close()
	// The same deployment restarts with other retry delays: nothing to re-declare.
	b := newBroker(t, testutil.AMQPURL(), deployment(prefix, 200*time.Millisecond, 400*time.Millisecond))
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.Ping(pctx); err != nil {
		t.Fatalf("not ready after a restart with other retry settings: %v", err)
	}
	rec := &recorder{b: b}
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	tries := 0
	go b.Consume(cctx, workers.RefundConsumer, broker.ConsumeOptions{Retry: rec.schedule}, func(context.Context, event.Envelope) error {
		mu.Lock()
		defer mu.Unlock()
		tries++
		if tries == 1 {
			return errors.New("provider down")
		}
		return nil
	})
	e := env(t, "r1")
	e.Type = event.PaymentRefundRequested
	if err := b.Publish(ctx, []event.Envelope{e}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the retry handled", func() bool { mu.Lock(); defer mu.Unlock(); return tries == 2 })
	calls := rec.snapshot()
	if len(calls) != 1 || calls[0].attempt != 2 || calls[0].wait > 200*time.Millisecond || calls[0].wait < 100*time.Millisecond {
		t.Fatalf("retry scheduled %+v, want attempt 2 within the new first delay (100-200ms)", calls)
	}
}

func TestConsume_RetriesScheduled_ThenDeadLettered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	topo := broker.Topology{Prefix: "t" + testutil.RandomID(4) + ".", Consumers: []broker.Consumer{{Name: "c", Types: []string{"test.event"}}},
		RetryDelays: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}}
	b := newBroker(t, testutil.AMQPURL(), topo)
	if err := b.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{b: b}
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	var attempts []int
	go b.Consume(cctx, "c", broker.ConsumeOptions{Retry: rec.schedule}, func(ctx context.Context, e event.Envelope) error {
		mu.Lock()
		attempts = append(attempts, len(attempts)+1)
		mu.Unlock()
		return errors.New("always fails: tok_visa 4242424242424242")
	})
	if err := b.Publish(ctx, []event.Envelope{env(t, "d1")}); err != nil {
		t.Fatal(err)
	}
	// Three retries (one per delay), then the dead-letter queue.
	dlq := testutil.AMQPChannel(t)
	var got amqp.Delivery
	testutil.Eventually(t, 10*time.Second, "the message in the dead-letter queue", func() bool {
		d, ok, err := dlq.Get(topo.DeadLetterQueue("c"), true)
		if err != nil {
			t.Fatal(err)
		}
		got = d
		return ok
	})
	calls := rec.snapshot()
	if len(calls) != 3 {
		t.Fatalf("%d retries scheduled, want 3: %+v", len(calls), calls)
	}
	for i, c := range calls {
		if c.attempt != i+2 || c.wait > topo.RetryDelays[i] || c.wait < topo.RetryDelays[i]/2 {
			t.Fatalf("retry %d: %+v, want attempt %d after %s to %s", i, c, i+2, topo.RetryDelays[i]/2, topo.RetryDelays[i])
		}
	}
	mu.Lock()
	n := len(attempts)
	mu.Unlock()
	if n != 4 {
		t.Fatalf("%d attempts, want 4", n)
	}
	if last, _ := got.Headers["x-last-error"].(string); last == "" || containsAny(last, "4242424242424242", "tok_visa") {
		t.Fatalf("x-last-error %q: missing, or not redacted", last)
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		for i := 0; i+len(sub) <= len(s); i++ {
			if s[i:i+len(sub)] == sub {
				return true
			}
		}
	}
	return false
}

func TestConsume_InPlaceConsumer_KeepsOrderThroughAFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	topo := broker.Topology{Prefix: "t" + testutil.RandomID(4) + ".", Consumers: []broker.Consumer{
		{Name: "ordered", Types: []string{"test.event"}, SingleActive: true, InPlace: true}}}
	b := newBroker(t, testutil.AMQPURL(), topo)
	if err := b.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var handled []string
	failed := false
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	rec := &recorder{b: b} // an in-place consumer never schedules
	go b.Consume(cctx, "ordered", broker.ConsumeOptions{Prefetch: 1, Concurrency: 1, Retry: rec.schedule}, func(_ context.Context, e event.Envelope) error {
		mu.Lock()
		defer mu.Unlock()
		var p map[string]string
		decode(e.Payload, &p)
		if p["n"] == "1" && !failed {
			failed = true
			return errors.New("database away for a moment")
		}
		handled = append(handled, p["n"])
		return nil
	})
	evs := []event.Envelope{env(t, "1"), env(t, "2"), env(t, "3")}
	if err := b.Publish(ctx, evs); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 15*time.Second, "three events handled", func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 3 })
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(handled) != "[1 2 3]" || !failed {
		t.Fatalf("handled %v (failed once: %v), want [1 2 3]", handled, failed)
	}
	if len(rec.snapshot()) != 0 {
		t.Fatal("an in-place consumer scheduled a retry (the next event would have overtaken it)")
	}
}

func TestUpgrade_OldDelayQueuesDrainedThenDeleted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	topo := deployment("t"+testutil.RandomID(4)+".", time.Second)
	ch := testutil.AMQPChannel(t)
	// What an earlier release left: a delay queue holding a message for ten minutes.
	retry0 := topo.Queue(workers.PaymentConsumer) + ".retry.0"
	retry1 := topo.Queue(workers.PaymentConsumer) + ".retry.1"
	for _, q := range []string{retry0, retry1} {
		if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-message-ttl": int64(600000),
			"x-dead-letter-exchange": "", "x-dead-letter-routing-key": topo.Queue(workers.PaymentConsumer)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.PublishWithContext(ctx, "", retry1, false, false, amqp.Publishing{MessageId: "m1", Type: event.OrderPlaced,
		DeliveryMode: amqp.Persistent, Body: []byte(`{"id":"m1","type":"order.placed"}`)}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the old message queued", func() bool {
		q, err := ch.QueueDeclarePassive(retry1, true, false, false, false, nil)
		return err == nil && q.Messages == 1
	})
	b := newBroker(t, testutil.AMQPURL(), topo)
	if err := b.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	q, err := testutil.AMQPChannel(t).QueueDeclarePassive(topo.Queue(workers.PaymentConsumer), true, false, false, false, nil)
	if err != nil || q.Messages != 1 {
		t.Fatalf("work queue holds %d messages (%v), want the one from the old delay queue", q.Messages, err)
	}
	for _, old := range []string{retry0, retry1} {
		if _, err := testutil.AMQPChannel(t).QueueDeclarePassive(old, true, false, false, false, nil); err == nil {
			t.Fatalf("%s still exists", old)
		}
	}
}

func TestBlockedConnection_PublishingPausesAndReadinessFails(t *testing.T) {
	t.Parallel()
	testutil.Slow(t)
	node := node.StartRabbit(t, node.RabbitOptions{})
	ctx := context.Background()
	topo := broker.Topology{Prefix: "b.", Consumers: []broker.Consumer{{Name: "c", Types: []string{"test.event"}}}}
	b := newBroker(t, node.URL(), topo)
	var mu sync.Mutex
	var changes []bool
	b.OnBlocked = func(v bool) { mu.Lock(); changes = append(changes, v); mu.Unlock() }
	if err := b.Publish(ctx, []event.Envelope{env(t, "before")}); err != nil {
		t.Fatal(err)
	}
	// A memory alarm: RabbitMQ blocks publishing connections.
	if out, err := node.Ctl(ctx, "set_vm_memory_high_watermark", "0.0000001"); err != nil {
		t.Fatalf("set watermark: %v %s", err, out)
	}
	t.Cleanup(func() { node.Ctl(context.Background(), "set_vm_memory_high_watermark", "0.4") })
	// A publish after the alarm is what makes RabbitMQ block the connection. The alarm is
	// raised by RabbitMQ's memory monitor, a moment after the command returns (longer on
	// a busy machine): a publish that came first goes through, or waits for a confirm,
	// and blocks nothing. So publish until the connection is seen blocked.
	testutil.Eventually(t, 20*time.Second, "the connection seen blocked", func() bool {
		if !b.Blocked() {
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			b.Publish(pctx, []event.Envelope{env(t, "during")})
			cancel()
		}
		return b.Blocked()
	})
	start := time.Now()
	if err := b.Publish(ctx, []event.Envelope{env(t, "blocked")}); !errors.Is(err, broker.ErrBlocked) || time.Since(start) > time.Second {
		t.Fatalf("publish while blocked: %v after %s, want ErrBlocked at once", err, time.Since(start))
	}
	if err := b.Ping(ctx); !errors.Is(err, broker.ErrBlocked) {
		t.Fatalf("readiness while blocked: %v", err)
	}
	if out, err := node.Ctl(ctx, "set_vm_memory_high_watermark", "0.4"); err != nil {
		t.Fatalf("reset watermark: %v %s", err, out)
	}
	testutil.Eventually(t, 10*time.Second, "the connection unblocked", func() bool { return !b.Blocked() })
	if err := b.Publish(ctx, []event.Envelope{env(t, "after")}); err != nil {
		t.Fatalf("publish after the alarm: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(changes) < 2 || !changes[0] || changes[len(changes)-1] {
		t.Fatalf("blocked changes %v, want true then false", changes)
	}
}

func decode(b []byte, v any) { _ = json.Unmarshal(b, v) }

// A consumer whose deliveries finish together acknowledges them in runs (multiple
// acks). Every delivery is still settled exactly once: the finished ones acked, the
// undecodable ones and a permanent failure dead-lettered, none redelivered (an ack of a
// tag RabbitMQ no longer holds would close the channel and redeliver what was in hand).
func TestConsume_CoalescedAcks_EachDeliverySettledOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	topo := broker.Topology{Prefix: "t" + testutil.RandomID(4) + ".", Consumers: []broker.Consumer{{Name: "batch", Types: []string{"test.event"}}}}
	b := newBroker(t, testutil.AMQPURL(), topo)
	if err := b.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 30
	var mu sync.Mutex
	handled := map[string]int{}
	release := make(chan struct{})
	var releaseOnce sync.Once
	cctx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		b.Consume(cctx, "batch", broker.ConsumeOptions{Prefetch: n + 2, Concurrency: n + 2, CoalesceAcks: true}, func(_ context.Context, e event.Envelope) error {
			var p map[string]string
			decode(e.Payload, &p)
			mu.Lock()
			handled[p["n"]]++
			if len(handled) == n { // the whole batch is in hand: finish it, in no particular order
				releaseOnce.Do(func() { close(release) })
			}
			mu.Unlock()
			<-release
			time.Sleep(time.Duration(len(p["n"])+int(e.ID[len(e.ID)-1])%5) * time.Millisecond)
			if p["n"] == "13" {
				return broker.Permanent(errors.New("refused"))
			}
			return nil
		})
	}()
	raw := testutil.AMQPChannel(t)
	undecodable := func() {
		if err := raw.Publish(topo.Exchange(), "test.event", false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("not an envelope")}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= n; i++ {
		if err := b.Publish(ctx, []event.Envelope{env(t, fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
		if i == n/2 {
			undecodable()
		}
	}
	undecodable() // the last delivery, rejected while the others are in hand
	dlq := topo.DeadLetterQueue("batch")
	testutil.Eventually(t, 15*time.Second, "the undecodable messages and the refused event dead-lettered", func() bool {
		q, err := testutil.AMQPChannel(t).QueueDeclarePassive(dlq, true, false, false, false, nil)
		return err == nil && q.Messages == 3
	})
	testutil.Eventually(t, 15*time.Second, "every delivery acked", func() bool {
		q, err := testutil.AMQPChannel(t).QueueDeclarePassive(topo.Queue("batch"), true, false, false, false, nil)
		return err == nil && q.Messages == 0
	})
	stop()
	<-stopped
	// Whatever was left unacked went back to the queue when the consumer's channel closed.
	q, err := testutil.AMQPChannel(t).QueueDeclarePassive(topo.Queue("batch"), true, false, false, false, nil)
	if err != nil || q.Messages != 0 {
		t.Fatalf("after the consumer stopped the queue holds %d messages (%v), want 0: some deliveries were never acked", q.Messages, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i <= n; i++ {
		if c := handled[fmt.Sprint(i)]; c != 1 {
			t.Fatalf("event %d handled %d times, want once", i, c)
		}
	}
}

// A deployment that stops running a consumer (the analytics sink turned off) unbinds
// that consumer's queue, once nothing takes it, so it stops filling; what it held stays.
// While another instance still consumes it, the queue stays bound.
func TestIdleConsumer_QueueUnboundOnceNothingTakesIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	prefix := "t" + testutil.RandomID(4) + "."
	sink := broker.Consumer{Name: "sink", Types: []string{"test.event", "test.other"}}
	work := broker.Consumer{Name: "work", Types: []string{"test.event"}}
	before := newBroker(t, testutil.AMQPURL(), broker.Topology{Prefix: prefix, Consumers: []broker.Consumer{work, sink}})
	if err := before.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := before.Publish(ctx, []event.Envelope{env(t, "1")}); err != nil {
		t.Fatal(err)
	}
	messages := func(q string) int {
		t.Helper()
		st, err := testutil.AMQPChannel(t).QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		return st.Messages
	}
	testutil.Eventually(t, 5*time.Second, "the first event in the sink's queue", func() bool { return messages(before.Topology().Queue("sink")) == 1 })

	// An instance still runs the sink's consumer: a deployment without it leaves it bound.
	taken := make(chan struct{}, 16)
	cctx, stop := context.WithCancel(ctx)
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		before.Consume(cctx, "sink", broker.ConsumeOptions{}, func(context.Context, event.Envelope) error { taken <- struct{}{}; return nil })
	}()
	<-taken
	after := broker.New(testutil.AMQPURL(), broker.Topology{Prefix: prefix, Consumers: []broker.Consumer{work}, Idle: []broker.Consumer{sink}}, nil)
	defer after.Close()
	if err := after.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := after.Publish(ctx, []event.Envelope{env(t, "2")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-taken:
	case <-time.After(10 * time.Second):
		t.Fatal("the sink's queue was unbound while an instance still consumed it")
	}
	stop()
	<-consumed

	// Nothing takes it any more: the next deployment without it unbinds it.
	if err := before.Publish(ctx, []event.Envelope{env(t, "3")}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the third event in the sink's queue", func() bool { return messages(before.Topology().Queue("sink")) == 1 })
	again := broker.New(testutil.AMQPURL(), broker.Topology{Prefix: prefix, Consumers: []broker.Consumer{work}, Idle: []broker.Consumer{sink}}, nil)
	defer again.Close()
	if err := again.Declare(ctx); err != nil {
		t.Fatal(err)
	}
	if err := again.Publish(ctx, []event.Envelope{env(t, "4"), env(t, "5")}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the events in the work queue", func() bool { return messages(before.Topology().Queue("work")) == 5 })
	if n := messages(before.Topology().Queue("sink")); n != 1 {
		t.Fatalf("the idle queue holds %d messages, want the 1 it held (unbound, kept)", n)
	}
}
