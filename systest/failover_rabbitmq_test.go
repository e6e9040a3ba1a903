package systest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/checkout-backend/checkout/internal/broker"
	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/testutil"
)

// queueMembers lists each queue's quorum members, as the cluster tells.
func queueMembers(t *testing.T, cluster *node.RabbitCluster) map[string][]string {
	t.Helper()
	out, err := cluster.Nodes[1].Ctl(context.Background(), "list_queues", "name", "members", "--formatter", "json", "--quiet")
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
	m := map[string][]string{}
	for _, q := range queues {
		m[q.Name] = q.Members
	}
	return m
}

// TestRabbitFailover_NodeKilledMidSale_EveryOrderPaidOnce runs the stack on a three-node
// RabbitMQ cluster listed in its AMQP URL. Every quorum queue is replicated on the three
// nodes. Mid-sale, the node the stack's connections were dialled to is SIGKILLed: the
// relay and the consumers move to a live node, the queues elect new leaders, and every
// order is PAID with one charge, every event consumed.
func TestRabbitFailover_NodeKilledMidSale_EveryOrderPaidOnce(t *testing.T) {
	testutil.Slow(t) // a private RabbitMQ or PostgreSQL node of its own
	t.Parallel()
	cluster := node.StartRabbitCluster(t, 3, node.RabbitOptions{})
	s := testutil.NewStack(t, testutil.StackOptions{AMQPURL: cluster.URL(), PrivateBroker: true})

	// The replication factor is the topology's: 3 by default, and 2 when set so.
	two := broker.Topology{Prefix: "two" + testutil.RandomID(3) + ".", QuorumSize: 2,
		Consumers: []broker.Consumer{{Name: "c", Types: []string{"t.happened"}}}, RetryDelays: []time.Duration{time.Second}}
	b := broker.New(cluster.URL(), two, nil)
	if err := b.Declare(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Close()
	members := queueMembers(t, cluster)
	n := 0
	for q, m := range members {
		switch {
		case strings.HasPrefix(q, s.Topology.Prefix):
			n++
			if len(m) != 3 {
				t.Errorf("queue %s has members %v, want the three nodes", q, m)
			}
		case strings.HasPrefix(q, two.Prefix) && len(m) != 2:
			t.Errorf("queue %s (QuorumSize 2) has members %v, want two", q, m)
		}
	}
	if n == 0 {
		t.Fatalf("no queue of the stack's topology on the cluster: %v", members)
	}

	stock := map[string]int{"FLASH": 15, "PLENTY": 100000}
	for sku, n := range stock {
		s.Product(t, sku, 1500, map[string]int{"w": n})
	}
	sh := open(t, s, 6, "FLASH", "PLENTY")
	sh.waitAcknowledged(20, time.Time{}, 60*time.Second)
	answers, _ := sh.results()
	waitPaid(t, s, answers[0].orderID, 60*time.Second) // the saga runs on the cluster

	killed := time.Now()
	cluster.Nodes[0].Kill() // the first URL: where every connection of the stack went
	sh.waitAcknowledged(20, killed, 60*time.Second)
	sh.close()
	answers, _ = sh.results()
	checkSaleSettles(t, s, answers, stock)

	var worst time.Duration
	for _, a := range answers {
		if a.orderID == "" {
			continue
		}
		var ms int
		if err := s.DB.NewRaw("SELECT (extract(epoch FROM updated_at - created_at) * 1000)::int FROM orders WHERE id = ?", a.orderID).Scan(context.Background(), &ms); err == nil {
			worst = max(worst, time.Duration(ms)*time.Millisecond)
		}
	}
	t.Logf("node %s killed mid-sale; %d orders all PAID once; slowest checkout-to-PAID %s", cluster.Nodes[0].Name, len(answers), worst)
}
