package broker_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/platform/procstat"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// BenchmarkConsume_BatchAcks consumes batches of events the way the analytics consumer
// does (a whole batch in hand, finished together) with one ack per delivery and with
// coalesced acks, and reports RabbitMQ's CPU per message (its beam.smp, from /proc).
func BenchmarkConsume_BatchAcks(b *testing.B) {
	for _, coalesce := range []bool{false, true} {
		b.Run(fmt.Sprintf("coalesce=%v", coalesce), func(b *testing.B) {
			const batch = 200
			ctx := context.Background()
			topo := broker.Topology{Prefix: "bench" + testutil.RandomID(4) + ".", Consumers: []broker.Consumer{{Name: "batch", Types: []string{"test.event"}}}}
			br := newBroker(b, testutil.AMQPURL(), topo)
			if err := br.Declare(ctx); err != nil {
				b.Fatal(err)
			}
			n := b.N * batch
			envs := make([]event.Envelope, 0, n)
			for i := 0; i < n; i++ {
				envs = append(envs, env(b, strconv.Itoa(i)))
			}
			for i := 0; i < n; i += 1000 {
				if err := br.Publish(ctx, envs[i:min(i+1000, n)]); err != nil {
					b.Fatal(err)
				}
			}
			var mu sync.Mutex
			inHand, handled := 0, 0
			release := make(chan struct{})
			done := make(chan struct{})
			cctx, stop := context.WithCancel(ctx)
			defer stop()
			cpu, measured := rabbitCPU()
			cpu0 := cpu()
			start := time.Now()
			b.ResetTimer()
			go br.Consume(cctx, "batch", broker.ConsumeOptions{Prefetch: batch, Concurrency: batch, CoalesceAcks: coalesce}, func(context.Context, event.Envelope) error {
				mu.Lock()
				inHand++
				r := release
				if inHand == batch {
					inHand = 0
					close(release)
					release = make(chan struct{})
				}
				mu.Unlock()
				<-r
				mu.Lock()
				handled++
				if handled == n {
					close(done)
				}
				mu.Unlock()
				return nil
			})
			<-done
			b.StopTimer()
			testutil.Eventually(b, 30*time.Second, "every message acked", func() bool {
				q, err := testutil.AMQPChannel(b).QueueDeclarePassive(topo.Queue("batch"), true, false, false, false, nil)
				return err == nil && q.Messages == 0
			})
			elapsed := time.Since(start)
			if measured {
				b.ReportMetric((cpu()-cpu0)/float64(n), "rabbitmq-cpu-µs/msg")
			}
			b.ReportMetric(float64(n)/elapsed.Seconds(), "msgs/s")
		})
	}
}

// BenchmarkPublish_EventsPerConfirm publishes order.placed events on a deployment's
// topology (three quorum queues take each) one per publish and ten per publish, each
// publish waiting for its confirms as the relay's does, and reports RabbitMQ's CPU per
// event: what OUTBOX_LINGER saves when it lets one publish carry several events.
func BenchmarkPublish_EventsPerConfirm(b *testing.B) {
	for _, per := range []int{1, 10} {
		b.Run(fmt.Sprintf("per=%d", per), func(b *testing.B) {
			ctx := context.Background()
			br := newBroker(b, testutil.AMQPURL(), deployment("bench"+testutil.RandomID(4)+"."))
			if err := br.Declare(ctx); err != nil {
				b.Fatal(err)
			}
			n := b.N * per
			envs := make([]event.Envelope, n)
			for i := range envs {
				id := "o" + strconv.Itoa(i)
				e, err := event.New(event.OrderPlaced, id, time.Now(), map[string]any{"orderId": id, "totalCents": 1234, "currency": "EUR"})
				if err != nil {
					b.Fatal(err)
				}
				envs[i] = e
			}
			cpu, measured := rabbitCPU()
			cpu0 := cpu()
			b.ResetTimer()
			for i := 0; i < n; i += per {
				if err := br.Publish(ctx, envs[i:i+per]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if measured {
				b.ReportMetric((cpu()-cpu0)/float64(n), "rabbitmq-cpu-µs/event")
			}
		})
	}
}

// rabbitCPU reads the RabbitMQ server's CPU, in microseconds, from its beam.smp's /proc
// accounting; ok is false where it cannot (off Linux, no local server: read says 0).
func rabbitCPU() (read func() float64, ok bool) {
	beam, err := procstat.RabbitBeam()
	if err != nil {
		return func() float64 { return 0 }, false
	}
	return func() float64 {
		ticks, _ := procstat.CPU(beam, false)
		return float64(ticks) * 1e6 / procstat.ClockTicks
	}, true
}
