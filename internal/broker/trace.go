package broker

import (
	"context"
	"maps"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/checkout-backend/checkout/internal/event"
	"github.com/checkout-backend/checkout/internal/platform/telemetry"
)

// Tracing of messages: an event's trace context travels in its headers (outbox row,
// AMQP message headers), so the producer span of the relay and the consumer span of a
// worker continue the trace of the request that wrote the event.

// amqpCarrier adapts AMQP headers to the propagator.
type amqpCarrier amqp.Table

func (c amqpCarrier) Get(key string) string {
	switch v := c[key].(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return ""
}

func (c amqpCarrier) Set(key, value string) { c[key] = value }

func (c amqpCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// StartPublish starts the producer span of one outbox event, as a child of the trace
// its headers carry (the request that wrote it), and stamps that span on a copy of the
// headers, so the message (and its consumers) continue from it. End the span once the
// broker confirmed (or failed) it.
func StartPublish(ctx context.Context, env *event.Envelope) trace.Span {
	ctx = telemetry.ExtractMap(ctx, env.Headers)
	ctx, span := telemetry.Tracer().Start(ctx, "publish "+env.Type, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "rabbitmq"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", env.Type),
			attribute.String("messaging.message.id", env.ID),
		))
	headers := make(map[string]string, len(env.Headers)+2)
	maps.Copy(headers, env.Headers)
	telemetry.InjectMap(ctx, headers)
	env.Headers = headers
	return span
}

// StartConsume starts the consumer span of one delivery, continuing the trace in its
// headers. The returned context carries the span for the handler.
func StartConsume(ctx context.Context, consumer string, d amqp.Delivery) (context.Context, trace.Span) {
	ctx = telemetry.Propagator.Extract(ctx, amqpCarrier(d.Headers))
	return telemetry.Tracer().Start(ctx, "process "+d.Type, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "rabbitmq"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.consumer.group.name", consumer),
			attribute.String("messaging.message.id", d.MessageId),
			attribute.Bool("messaging.rabbitmq.redelivered", d.Redelivered),
		))
}

// Publisher sends events and returns once the broker confirmed every one; Broker is
// one, and so is the outbox's Publisher.
type Publisher interface {
	Publish(ctx context.Context, events []event.Envelope) error
}

// TracePublisher wraps the relay's publisher: each event gets a producer span
// continuing the trace its outbox row carried, ended when the broker confirmed the batch
// or failed it, and the event carries that span to its consumers.
func TracePublisher(p Publisher) Publisher { return tracingPublisher{p} }

type tracingPublisher struct{ next Publisher }

func (t tracingPublisher) Publish(ctx context.Context, events []event.Envelope) error {
	traced := make([]event.Envelope, len(events))
	spans := make([]trace.Span, len(events))
	for i := range events {
		traced[i] = events[i]
		spans[i] = StartPublish(ctx, &traced[i])
	}
	err := t.next.Publish(ctx, traced)
	for _, s := range spans {
		telemetry.End(s, err)
	}
	return err
}

// TraceHandler wraps a handler of events that arrive without their delivery (the status
// feed): each is handled in a consumer span continuing the trace in the envelope's
// headers, and the span records the handler's error.
func TraceHandler(consumer string, h func(context.Context, event.Envelope) error) func(context.Context, event.Envelope) error {
	return func(ctx context.Context, env event.Envelope) error {
		ctx = telemetry.ExtractMap(ctx, env.Headers)
		ctx, span := StartConsume(ctx, consumer, amqp.Delivery{Type: env.Type, MessageId: env.ID})
		err := h(ctx, env)
		telemetry.End(span, err)
		return err
	}
}
