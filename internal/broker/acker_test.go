package broker

import (
	"fmt"
	"strings"
	"testing"
)

// frames records what an acker sends, as a channel would put it on the wire.
type frames struct{ sent []string }

func (f *frames) Ack(tag uint64, multiple bool) error {
	f.sent = append(f.sent, fmt.Sprintf("ack %d multiple=%v", tag, multiple))
	return nil
}

func (f *frames) Nack(tag uint64, multiple, requeue bool) error {
	f.sent = append(f.sent, fmt.Sprintf("nack %d requeue=%v", tag, requeue))
	return nil
}

func TestAcker_OneMultipleAckPerRunOfFinishedDeliveries(t *testing.T) {
	f := &frames{}
	a := &acker{ch: f}
	for tag := uint64(1); tag <= 6; tag++ {
		a.delivered(tag)
	}
	step := func(what string, do func(), want ...string) {
		t.Helper()
		f.sent = nil
		do()
		if got := strings.Join(f.sent, "; "); got != strings.Join(want, "; ") {
			t.Fatalf("%s: sent %q, want %q", what, got, strings.Join(want, "; "))
		}
	}
	step("3 finishes while 1 and 2 are in hand", func() { a.ack(3) })
	step("1 finishes: it alone is at the front", func() { a.ack(1) }, "ack 1 multiple=true")
	step("2 finishes: 2 and 3 go in one ack", func() { a.ack(2) }, "ack 3 multiple=true")
	step("5 finishes behind 4", func() { a.ack(5) })
	// A rejected delivery is settled alone, at once, and the ack after it leaves it alone.
	step("4 is requeued", func() { a.nack(4, true) }, "nack 4 requeue=true", "ack 5 multiple=true")
	// The run's last delivery was rejected: the multiple ack stops at the finished one
	// before it (RabbitMQ closes the channel on an ack of a tag it no longer holds).
	a.delivered(7)
	step("7 is dead-lettered while 6 is in hand", func() { a.nack(7, false) }, "nack 7 requeue=false")
	step("6 finishes", func() { a.ack(6) }, "ack 6 multiple=true")
	if len(a.q) != 0 {
		t.Fatalf("%d deliveries still tracked after all were settled", len(a.q))
	}
}
