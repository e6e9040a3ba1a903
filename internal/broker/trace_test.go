package broker_test

// These tests swap the process-wide tracer provider (telemetrytest.Record), so none runs
// in parallel.

import (
	"context"
	"errors"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/platform/telemetry"
	"github.com/checkout-backend/checkout/internal/platform/telemetry/telemetrytest"
)

func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	var names []string
	for _, s := range spans {
		if s.Name == name {
			return s
		}
		names = append(names, s.Name)
	}
	t.Fatalf("no span %q among %q", name, names)
	return tracetest.SpanStub{}
}

func TestAMQP_PublishAndConsumeSpansShareTheTrace(t *testing.T) {
	exp := telemetrytest.Record(t)
	ctx, root := telemetry.Tracer().Start(context.Background(), "checkout")
	row := map[string]string{}
	telemetry.InjectMap(ctx, row) // as outbox.Insert does through the global propagator
	root.End()

	// The relay restamps the event's headers with its producer span; the broker copies
	// them onto the message.
	env := event.Envelope{ID: "e1", Type: "order.placed", AggregateID: "o1", Headers: row}
	pub := broker.StartPublish(context.Background(), &env)
	telemetry.End(pub, nil)
	if env.Headers["traceparent"] == row["traceparent"] {
		t.Fatal("the publish span was not stamped on the event's headers")
	}

	// Over the wire header values may come back as []byte.
	wire := amqp.Table{}
	for k, v := range env.Headers {
		wire[k] = []byte(v)
	}
	hctx, consume := broker.StartConsume(context.Background(), "payment", amqp.Delivery{Type: env.Type, MessageId: env.ID, Headers: wire})
	_, charge := telemetry.Tracer().Start(hctx, "charge")
	charge.End()
	telemetry.End(consume, errors.New("provider down"))

	spans := exp.GetSpans()
	p, c, ch := spanNamed(t, spans, "publish order.placed"), spanNamed(t, spans, "process order.placed"), spanNamed(t, spans, "charge")
	for _, s := range []tracetest.SpanStub{p, c, ch} {
		if s.SpanContext.TraceID() != root.SpanContext().TraceID() {
			t.Errorf("span %q in trace %s, want %s", s.Name, s.SpanContext.TraceID(), root.SpanContext().TraceID())
		}
	}
	if p.Parent.SpanID() != root.SpanContext().SpanID() || c.Parent.SpanID() != p.SpanContext.SpanID() || ch.Parent.SpanID() != c.SpanContext.SpanID() {
		t.Error("spans are not chained checkout -> publish -> process -> charge")
	}
	if p.SpanKind != trace.SpanKindProducer || c.SpanKind != trace.SpanKindConsumer {
		t.Errorf("kinds %v, %v; want producer, consumer", p.SpanKind, c.SpanKind)
	}
	if c.Status.Description != "provider down" {
		t.Errorf("consume span status %+v; want the handler's error", c.Status)
	}
}

type recordingPublisher struct{ got []event.Envelope }

func (r *recordingPublisher) Publish(_ context.Context, envs []event.Envelope) error {
	r.got = append(r.got, envs...)
	return nil
}

func TestTracePublisherAndHandler_RelayToWorkerStayInTheTrace(t *testing.T) {
	exp := telemetrytest.Record(t)
	ctx, root := telemetry.Tracer().Start(context.Background(), "checkout")
	env := event.Envelope{ID: "e1", Type: event.OrderPlaced, Headers: map[string]string{}}
	telemetry.InjectMap(ctx, env.Headers) // as outbox.Insert does through the global propagator
	root.End()

	var pub recordingPublisher
	if err := broker.TracePublisher(&pub).Publish(context.Background(), []event.Envelope{env}); err != nil {
		t.Fatal(err)
	}
	if env.Headers["traceparent"] == pub.got[0].Headers["traceparent"] {
		t.Fatal("the published event does not carry the publish span")
	}
	// A consumer that gets the envelope alone (the feed) continues from its headers.
	var handlerTrace string
	h := broker.TraceHandler("feed", func(ctx context.Context, env event.Envelope) error {
		handlerTrace = telemetry.TraceID(ctx)
		return nil
	})
	if err := h(context.Background(), pub.got[0]); err != nil {
		t.Fatal(err)
	}
	spans := exp.GetSpans()
	p, c := spanNamed(t, spans, "publish order.placed"), spanNamed(t, spans, "process order.placed")
	if handlerTrace != root.SpanContext().TraceID().String() || c.Parent.SpanID() != p.SpanContext.SpanID() || p.Parent.SpanID() != root.SpanContext().SpanID() {
		t.Errorf("not chained checkout -> publish -> process in one trace (handler saw %s)", handlerTrace)
	}
}
