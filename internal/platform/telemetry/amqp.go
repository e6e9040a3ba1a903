package telemetry

import (
	"context"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/checkout-backend/checkout/internal/event"
)

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

// InjectAMQP writes ctx's trace context into a message's headers (which must not be nil).
func InjectAMQP(ctx context.Context, headers amqp.Table) {
	Propagator.Inject(ctx, amqpCarrier(headers))
}

// ExtractAMQP returns ctx continuing the trace context in a delivery's headers.
func ExtractAMQP(ctx context.Context, headers amqp.Table) context.Context {
	return Propagator.Extract(ctx, amqpCarrier(headers))
}

// StartPublish starts the producer span of one outbox event, as a child of the trace
// stored in its row's headers, and stamps that span on the message's headers so its
// consumers continue from it. End the span once the broker confirmed (or failed) it.
func StartPublish(ctx context.Context, rowHeaders map[string]string, msg *amqp.Publishing) trace.Span {
	ctx = ExtractMap(ctx, rowHeaders)
	ctx, span := Tracer().Start(ctx, "publish "+msg.Type, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "rabbitmq"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", msg.Type),
			attribute.String("messaging.message.id", msg.MessageId),
		))
	if msg.Headers == nil {
		msg.Headers = amqp.Table{}
	}
	InjectAMQP(ctx, msg.Headers)
	return span
}

// StartConsume starts the consumer span of one delivery, continuing the trace in its
// headers. The returned context carries the span for the handler.
func StartConsume(ctx context.Context, consumer string, d amqp.Delivery) (context.Context, trace.Span) {
	ctx = ExtractAMQP(ctx, d.Headers)
	return Tracer().Start(ctx, "process "+d.Type, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "rabbitmq"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.consumer.group.name", consumer),
			attribute.String("messaging.message.id", d.MessageId),
			attribute.Bool("messaging.rabbitmq.redelivered", d.Redelivered),
		))
}

// End ends span, marking it failed when err is not nil.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Publisher is what the outbox relay publishes with (outbox.Publisher).
type Publisher interface {
	Publish(ctx context.Context, msgs []amqp.Publishing) error
}

// TracePublisher wraps the relay's publisher: each message gets a producer span
// continuing the trace its outbox row carried (broker.Message copies the row's headers
// onto the message), ended when the broker confirmed the batch or failed it, and the
// message carries that span to its consumers.
func TracePublisher(p Publisher) Publisher { return tracingPublisher{p} }

type tracingPublisher struct{ next Publisher }

func (t tracingPublisher) Publish(ctx context.Context, msgs []amqp.Publishing) error {
	spans := make([]trace.Span, len(msgs))
	for i := range msgs {
		row := map[string]string{}
		for k, v := range msgs[i].Headers {
			if s, ok := v.(string); ok {
				row[k] = s
			}
		}
		spans[i] = StartPublish(ctx, row, &msgs[i])
	}
	err := t.next.Publish(ctx, msgs)
	for _, s := range spans {
		End(s, err)
	}
	return err
}

// TraceHandler wraps a consumer's handler: each event is handled in a consumer span
// continuing the trace of its delivery's headers (headers is broker.Headers), or of the
// envelope's own headers when the delivery has none; the span records the handler's
// error.
func TraceHandler(consumer string, headers func(context.Context) amqp.Table, h func(context.Context, event.Envelope) error) func(context.Context, event.Envelope) error {
	return func(ctx context.Context, env event.Envelope) error {
		d := amqp.Delivery{Type: env.Type, MessageId: env.ID}
		if headers != nil {
			d.Headers = headers(ctx)
		}
		if _, ok := d.Headers["traceparent"]; !ok {
			ctx = ExtractMap(ctx, env.Headers)
		}
		ctx, span := StartConsume(ctx, consumer, d)
		err := h(ctx, env)
		End(span, err)
		return err
	}
}
