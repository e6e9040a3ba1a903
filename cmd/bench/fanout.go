package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/checkout-backend/checkout/internal/platform/auth"
)

// fanoutStock is the stock of the fanout workload's one SKU: the most orders it places.
const fanoutStock = 1000

// fanout: a few PAID orders followed by many WebSocket subscribers on one API instance;
// each order is shipped once, and every subscriber must receive that one update, then
// complete (SHIPPED is final).
var fanout = &workload{
	name:  "fanout",
	short: "FO",
	about: "order status updates to many WebSocket subscribers (graphql-transport-ws) on one API instance",
	catalog: func(prefix string) []productSpec {
		return []productSpec{{SKU: prefix + "-SUB", PriceCents: 2500, Stock: map[string]int{"bench-ams": fanoutStock}}}
	},
	run: runFanout,
}

const (
	fanoutSubscription = `subscription BenchFanout($id: ID!) { orderStatusChanged(orderId: $id) { id status updatedAt } }`
	fanoutCheckout     = `mutation BenchFanoutCheckout($input: CheckoutInput!) {
  checkout(input: $input) { order { id status } userErrors { code message } }
}`
	fanoutShip = `mutation BenchShip($id: ID!, $tracking: String!) {
  shipOrder(id: $id, trackingNumber: $tracking) { order { id status updatedAt } userErrors { code message } }
}`
	// fanoutDials bounds the WebSocket handshakes in flight.
	fanoutDials = 100
	// fanoutConnectTimeout bounds one subscriber's dial, connection_init, subscribe and
	// first message.
	fanoutConnectTimeout = 20 * time.Second
	// fanoutDeliverTimeout is how long after the ship mutations the subscribers may take
	// to receive their update and complete.
	fanoutDeliverTimeout = 15 * time.Second
)

// fanoutFiles is the open-file limit the fanout needs (in the bench and in the service):
// a socket per subscriber, and some to spare.
func fanoutFiles(subscribers int) uint64 { return uint64(subscribers) + 512 }

// subscriber is what one WebSocket client saw.
type subscriber struct {
	orderID     string
	connected   bool          // connection_ack, subscribed, and the first message came
	connectTime time.Duration // dial to first message
	first       string        // the status of the first message (the current state)
	updates     int           // SHIPPED updates received
	receiveAt   time.Time     // receipt of the (first) SHIPPED update
	updatedAt   time.Time     // its updatedAt
	completed   bool
	err         string // what went wrong, if anything (a short kind)
}

// statusMessage is the payload of a `next` message.
type statusMessage struct {
	Data *struct {
		OrderStatusChanged *struct {
			ID        string    `json:"id"`
			Status    string    `json:"status"`
			UpdatedAt time.Time `json:"updatedAt"`
		} `json:"orderStatusChanged"`
	} `json:"data"`
	Errors []gqlError `json:"errors"`
}

func runFanout(ctx context.Context, env *runEnv) (*Report, error) {
	o := env.opts
	r := &Report{Workload: env.workload.name, NoAttack: true,
		About: fmt.Sprintf("%d WebSocket subscribers (graphql-transport-ws, partner tokens) on %d orders, one API instance; each order shipped once",
			o.subscribers, o.fanoutOrders)}

	// The orders: placed with tok_visa, then PAID by the payment worker.
	setup := Section{Title: "orders to follow"}
	ids, err := placeFanoutOrders(ctx, env)
	if err != nil {
		return nil, err
	}
	paidIn, statuses, err := waitStatus(ctx, env, ids, "PAID", o.settle)
	if err != nil {
		return nil, err
	}
	if statuses["PAID"] != len(ids) {
		setup.Add("orders", "%d placed; after %s: %s", len(ids), paidIn.Round(10*time.Millisecond), countsText(statuses))
		r.Sections = append(r.Sections, setup)
		return r, fmt.Errorf("fanout: %d of %d orders PAID after %s (%s); the payment worker did not keep up",
			statuses["PAID"], len(ids), paidIn.Round(10*time.Millisecond), countsText(statuses))
	}
	setup.Add("orders", "%d placed with tok_visa, all PAID %s after the last checkout", len(ids), paidIn.Round(10*time.Millisecond))
	r.Sections = append(r.Sections, setup)

	limit, limitErr := raiseFileLimit(fanoutFiles(o.subscribers))
	// A partner token per subscriber: each is its own client, as 1000 partner
	// dashboards would be (one subject would share one rate-limit bucket).
	tokens := make([]string, o.subscribers)
	for i := range tokens {
		if tokens[i], err = auth.Sign(o.jwtSecret, fmt.Sprintf("%spartner-%04d", env.customerPrefix, i), []string{"partner"}, time.Hour); err != nil {
			return nil, err
		}
	}

	// Connect every subscriber; each reads its stream until complete (or the end).
	subs := make([]*subscriber, o.subscribers)
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	var ready, done sync.WaitGroup
	dials := make(chan struct{}, fanoutDials)
	connectStart := time.Now()
	var lastReadyMu sync.Mutex
	var lastReady time.Time
	for i := range subs {
		s := &subscriber{orderID: ids[i%len(ids)]}
		subs[i] = s
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			isReady := false
			markReady := func() {
				if !isReady {
					isReady = true
					lastReadyMu.Lock()
					lastReady = time.Now()
					lastReadyMu.Unlock()
					ready.Done()
				}
			}
			defer markReady()
			dials <- struct{}{}
			c, err := s.connect(readCtx, env.target, tokens[i])
			<-dials
			markReady()
			if err != nil {
				return
			}
			s.follow(readCtx, c)
		}()
	}
	ready.Wait()
	connectWall := lastReady.Sub(connectStart)

	// The status change: every order shipped, at once.
	shipStart := time.Now()
	shipErr := shipOrders(ctx, env, ids)
	shipTook := time.Since(shipStart)

	// Wait for every stream to complete, then cut the stragglers.
	finished := make(chan struct{})
	go func() { done.Wait(); close(finished) }()
	deliverTimedOut := false
	select {
	case <-finished:
	case <-time.After(fanoutDeliverTimeout):
		deliverTimedOut = true
	case <-ctx.Done():
		r.Interrupted = true
	}
	stopReading()
	<-finished
	if ctx.Err() != nil {
		r.Interrupted = true
	}

	// The figures.
	var connects, latencies []time.Duration
	errs := map[string]int{}
	connected, received, completed, duplicates := 0, 0, 0, 0
	var lastReceive time.Time
	for _, s := range subs {
		if s.err != "" {
			errs[s.err]++
		}
		if !s.connected {
			continue
		}
		connected++
		connects = append(connects, s.connectTime)
		if s.updates > 0 {
			received++
			latencies = append(latencies, s.receiveAt.Sub(s.updatedAt))
			if s.receiveAt.After(lastReceive) {
				lastReceive = s.receiveAt
			}
		}
		if s.updates > 1 {
			duplicates++
		}
		if s.completed {
			completed++
		}
	}
	perOrder := o.subscribers / len(ids)
	spread := fmt.Sprintf("%d per order", perOrder)
	if o.subscribers%len(ids) != 0 {
		spread = fmt.Sprintf("%d-%d per order", perOrder, perOrder+1)
	}

	sub := Section{Title: "subscribers (orderStatusChanged over WebSocket)"}
	sub.Add("subscribers connected", "%d of %d (%s, %d orders)", connected, o.subscribers, spread, len(ids))
	sub.Add("connect time", "%s for all (%d handshakes at a time); per subscriber %s",
		connectWall.Round(time.Millisecond), fanoutDials, distribution(connects))
	sub.Add("", "(dial + connection_init + subscribe + first message, the current state)")
	if limitErr != nil {
		sub.Add("open-file limit", "%d, too low: %v", limit, limitErr)
	} else if limit > 0 {
		sub.Add("open-file limit", "%d (bench process; %d needed)", limit, fanoutFiles(o.subscribers))
	}
	r.Sections = append(r.Sections, sub)

	upd := Section{Title: "status change: shipOrder (PAID -> SHIPPED), one update per subscriber"}
	if shipErr != nil {
		upd.Add("ship mutations", "%d sent in %s: %v", len(ids), shipTook.Round(time.Millisecond), shipErr)
	} else {
		upd.Add("ship mutations", "%d in %s (admin, concurrent)", len(ids), shipTook.Round(time.Millisecond))
	}
	upd.Add("messages received", "%d / %d expected (complete: %d)", received, connected, completed)
	upd.Add("latency", "%s  (receipt - the order's updatedAt, %d messages)", distribution(latencies), len(latencies))
	if received > 0 {
		upd.Add("last update", "received %s after the first ship mutation was sent", lastReceive.Sub(shipStart).Round(time.Millisecond))
	}
	nErr := 0
	for _, n := range errs {
		nErr += n
	}
	upd.Add("errors", "%d", nErr)
	kinds := slices.SortedFunc(maps.Keys(errs), func(a, b string) int {
		return cmp.Or(cmp.Compare(errs[b], errs[a]), cmp.Compare(a, b))
	})
	for _, k := range kinds {
		upd.Add("", "%6d  %s", errs[k], k)
	}
	r.Sections = append(r.Sections, upd)

	if shipErr == nil && !r.Interrupted {
		if missed := connected - received; missed > 0 {
			why := ""
			if deliverTimedOut {
				why = fmt.Sprintf(" within %s", fanoutDeliverTimeout)
			}
			r.Fail("%d of %d connected subscribers did not receive the SHIPPED update%s", missed, connected, why)
		}
		if duplicates > 0 {
			r.Fail("%d subscribers received the SHIPPED update more than once", duplicates)
		}
	}
	return r, nil
}

// connect dials, initialises, subscribes to s.orderID and reads the first message (the
// order's current state).
func (s *subscriber) connect(ctx context.Context, baseURL, token string) (*wsClient, error) {
	cctx, cancel := context.WithTimeout(ctx, fanoutConnectTimeout)
	defer cancel()
	start := time.Now()
	c, err := dialWS(cctx, baseURL, token)
	if err != nil {
		s.err = "connect: " + wsErrorKind(err)
		return nil, err
	}
	if err := c.subscribe(cctx, "1", fanoutSubscription, map[string]any{"id": s.orderID}); err != nil {
		s.err = "subscribe: " + wsErrorKind(err)
		c.closeNow()
		return nil, err
	}
	m, at, err := c.next(cctx)
	if err != nil {
		s.err = "first message: " + wsErrorKind(err)
		c.closeNow()
		return nil, err
	}
	if !s.handle(m, at) {
		c.closeNow()
		return nil, errors.New(s.err)
	}
	s.connected = true
	s.connectTime = at.Sub(start)
	return c, nil
}

// follow reads the stream until complete, an error, or ctx ends, then closes.
func (s *subscriber) follow(ctx context.Context, c *wsClient) {
	if s.completed {
		c.close()
		return
	}
	for {
		m, at, err := c.next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				if s.updates == 0 {
					s.err = "no update before the end of the wait"
				} else {
					s.err = "no complete before the end of the wait"
				}
			} else {
				s.err = "read: " + wsErrorKind(err)
			}
			c.closeNow()
			return
		}
		if !s.handle(m, at) || s.completed {
			c.close()
			return
		}
	}
}

// handle records one message received at at; false ends the subscriber (an error).
func (s *subscriber) handle(m wsMessage, at time.Time) bool {
	switch m.Type {
	case "next":
		var p statusMessage
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			s.err = "undecodable next message"
			return false
		}
		if len(p.Errors) > 0 {
			s.err = "next with error " + errorName(p.Errors[0])
			return false
		}
		if p.Data == nil || p.Data.OrderStatusChanged == nil {
			s.err = "next without the order"
			return false
		}
		o := p.Data.OrderStatusChanged
		if s.first == "" {
			s.first = o.Status
		}
		if o.Status == "SHIPPED" {
			s.updates++
			if s.updates == 1 {
				s.receiveAt, s.updatedAt = at, o.UpdatedAt
			}
		}
		return true
	case "complete":
		s.completed = true
		return true
	case "error":
		var errs []gqlError
		if json.Unmarshal(m.Payload, &errs) == nil && len(errs) > 0 {
			s.err = "error message " + errorName(errs[0])
		} else {
			s.err = "error message"
		}
		return false
	default:
		s.err = fmt.Sprintf("unexpected message type %q", m.Type)
		return false
	}
}

// placeFanoutOrders places the workload's orders, one unit each, each by its own
// customer, paying with tok_visa.
func placeFanoutOrders(ctx context.Context, env *runEnv) ([]string, error) {
	n := env.opts.fanoutOrders
	ids := make([]string, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := newGraphQLClient(env.target, env.opts.jwtSecret, fmt.Sprintf("%s%04d", env.customerPrefix, i), nil, time.Hour)
			if err != nil {
				errs[i] = err
				return
			}
			var out struct {
				Checkout struct {
					Order *struct {
						ID string `json:"id"`
					} `json:"order"`
					UserErrors []struct {
						Code    string `json:"code"`
						Message string `json:"message"`
					} `json:"userErrors"`
				} `json:"checkout"`
			}
			err = c.do(ctx, fanoutCheckout, map[string]any{"input": map[string]any{
				"idempotencyKey": fmt.Sprintf("%s-%d", env.prefix, i),
				"paymentToken":   "tok_visa",
				"items":          []lineItem{{SKU: env.catalog[0].SKU, Quantity: 1}},
			}}, &out)
			switch {
			case err != nil:
				errs[i] = err
			case out.Checkout.Order == nil && len(out.Checkout.UserErrors) > 0:
				errs[i] = fmt.Errorf("%s: %s", out.Checkout.UserErrors[0].Code, out.Checkout.UserErrors[0].Message)
			case out.Checkout.Order == nil:
				errs[i] = errors.New("no order")
			default:
				ids[i] = out.Checkout.Order.ID
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("fanout: place orders: %w", err)
	}
	return ids, nil
}

// waitStatus polls until every order of ids has status want, or limit passes; it
// returns how long it waited and the statuses then.
func waitStatus(ctx context.Context, env *runEnv, ids []string, want string, limit time.Duration) (time.Duration, map[string]int, error) {
	start := time.Now()
	for {
		statuses, err := countBy(ctx, env.db, `SELECT status, count(*)::int FROM orders WHERE id::text = ANY($1) GROUP BY status`, ids)
		if err != nil {
			return 0, nil, err
		}
		waited := time.Since(start)
		if statuses[want] == len(ids) || waited >= limit {
			return waited, statuses, nil
		}
		select {
		case <-ctx.Done():
			return waited, statuses, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// shipOrders ships every order at once with the admin token.
func shipOrders(ctx context.Context, env *runEnv, ids []string) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out struct {
				ShipOrder struct {
					Order *struct {
						Status string `json:"status"`
					} `json:"order"`
					UserErrors []struct {
						Code    string `json:"code"`
						Message string `json:"message"`
					} `json:"userErrors"`
				} `json:"shipOrder"`
			}
			err := env.admin.do(ctx, fanoutShip, map[string]any{"id": id, "tracking": fmt.Sprintf("BENCH-%s-%d", env.prefix, i)}, &out)
			switch {
			case err != nil:
				errs[i] = err
			case len(out.ShipOrder.UserErrors) > 0:
				errs[i] = fmt.Errorf("order %s: %s: %s", id, out.ShipOrder.UserErrors[0].Code, out.ShipOrder.UserErrors[0].Message)
			case out.ShipOrder.Order == nil || out.ShipOrder.Order.Status != "SHIPPED":
				errs[i] = fmt.Errorf("order %s: not SHIPPED", id)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

var (
	wsNoise   = strings.NewReplacer("failed to WebSocket dial: ", "", "failed to send handshake request: ", "")
	reqPrefix = regexp.MustCompile(`[A-Za-z]+ "[^"]*": `)
)

// wsErrorKind shortens a WebSocket client error to its kind, as transportError does.
func wsErrorKind(err error) string {
	return transportError(reqPrefix.ReplaceAllString(wsNoise.Replace(err.Error()), ""))
}
