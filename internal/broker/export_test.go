package broker

import amqp "github.com/rabbitmq/amqp091-go"

// LoseDeliveries makes opt swallow the deliveries lose picks (never handled, never
// acked), as a broker that counts a message delivered to a consumer that never got it.
func LoseDeliveries(opt ConsumeOptions, lose func(d amqp.Delivery) bool) ConsumeOptions {
	opt.lose = lose
	return opt
}
