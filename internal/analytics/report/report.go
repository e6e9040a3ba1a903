package report

import (
	"sort"
	"time"

	"github.com/checkout-backend/checkout/internal/analytics"
)

// Report is what the facts of a window say.
type Report struct {
	// From and To are the first and last event times read.
	From, To time.Time
	// Orders and Carts are the orders placed and carts created.
	Orders, Carts int
	// OrdersPerMinute has one entry per minute from the first order to the last
	// (minutes without orders included, at 0).
	OrdersPerMinute []MinuteCount
	PeakPerMinute   int
	// Revenue is per currency, sorted by currency.
	Revenue    []Revenue
	Payments   Payments
	Conversion Conversion
	// SellOut lists the SKUs seen sold out, slowest first.
	SellOut []SellOut
	// ToPaid is the time from checkout (order placed) to PAID.
	ToPaid Percentiles
	// Files and Duplicates come from Load.
	Files, Duplicates int
}

// MinuteCount is the number of orders placed in one minute.
type MinuteCount struct {
	Minute time.Time
	Orders int
}

// Revenue is one currency's totals, in the currency's minor unit.
type Revenue struct {
	Currency     string
	PlacedOrders int
	PlacedCents  int64
	PaidOrders   int
	PaidCents    int64
}

// Payments are payment outcomes.
type Payments struct {
	Succeeded, Failed int
	// FailureRate is Failed / (Succeeded + Failed), 0 when there is no outcome.
	FailureRate float64
	// Reasons are the failures by decline reason, most frequent first.
	Reasons []ReasonCount
}

// ReasonCount is the number of failed payments with one reason.
type ReasonCount struct {
	Reason string
	Count  int
}

// Conversion is carts created against carts checked out.
type Conversion struct {
	CartsCreated, CartsConverted int
	// Rate is CartsConverted / CartsCreated.
	Rate float64
	// OrdersWithoutCart were placed from a list of items, not a cart.
	OrdersWithoutCart int
}

// SellOut is how fast one SKU sold out: from its first order to the order that took
// its last unit (the last order of it placed before its stock was first seen at 0).
type SellOut struct {
	SKU          string
	FirstOrderAt time.Time
	LastUnitAt   time.Time
	Duration     time.Duration
	Orders       int
	Units        int
}

// Percentiles of a duration distribution (nearest rank).
type Percentiles struct {
	Count              int
	P50, P90, P99, Max time.Duration
}

// Compute builds the report of d.
func Compute(d Data) Report {
	r := Report{Orders: len(d.Orders), Carts: len(d.Carts), Files: d.Files, Duplicates: d.Duplicates}
	r.span(d)
	r.ordersPerMinute(d.Orders)
	r.revenue(d)
	r.payments(d.Payments)
	r.conversion(d)
	r.sellOut(d)
	r.toPaid(d)
	return r
}

func (r *Report) span(d Data) {
	see := func(t time.Time) {
		if r.From.IsZero() || t.Before(r.From) {
			r.From = t
		}
		if t.After(r.To) {
			r.To = t
		}
	}
	for _, o := range d.Orders {
		see(o.PlacedAt)
	}
	for _, s := range d.StatusChanges {
		see(s.OccurredAt)
	}
	for _, c := range d.Carts {
		see(c.CreatedAt)
	}
}

func (r *Report) ordersPerMinute(orders []analytics.Order) {
	if len(orders) == 0 {
		return
	}
	per := map[time.Time]int{}
	first, last := orders[0].PlacedAt.UTC().Truncate(time.Minute), orders[0].PlacedAt.UTC().Truncate(time.Minute)
	for _, o := range orders {
		m := o.PlacedAt.UTC().Truncate(time.Minute)
		per[m]++
		if m.Before(first) {
			first = m
		}
		if m.After(last) {
			last = m
		}
	}
	// Bounded: a window of years of sparse orders lists the minutes that had some.
	if last.Sub(first) > 7*24*time.Hour {
		for m, n := range per {
			r.OrdersPerMinute = append(r.OrdersPerMinute, MinuteCount{Minute: m, Orders: n})
		}
		sort.Slice(r.OrdersPerMinute, func(i, j int) bool { return r.OrdersPerMinute[i].Minute.Before(r.OrdersPerMinute[j].Minute) })
	} else {
		for m := first; !m.After(last); m = m.Add(time.Minute) {
			r.OrdersPerMinute = append(r.OrdersPerMinute, MinuteCount{Minute: m, Orders: per[m]})
		}
	}
	for _, m := range r.OrdersPerMinute {
		r.PeakPerMinute = max(r.PeakPerMinute, m.Orders)
	}
}

func (r *Report) revenue(d Data) {
	by := map[string]*Revenue{}
	get := func(c string) *Revenue {
		if by[c] == nil {
			by[c] = &Revenue{Currency: c}
		}
		return by[c]
	}
	for _, o := range d.Orders {
		v := get(o.Currency)
		v.PlacedOrders++
		v.PlacedCents += o.TotalCents
	}
	for _, p := range d.Payments {
		if p.Outcome == analytics.PaymentSucceeded {
			v := get(p.Currency)
			v.PaidOrders++
			v.PaidCents += p.AmountCents
		}
	}
	for _, v := range by {
		r.Revenue = append(r.Revenue, *v)
	}
	sort.Slice(r.Revenue, func(i, j int) bool { return r.Revenue[i].Currency < r.Revenue[j].Currency })
}

func (r *Report) payments(ps []analytics.Payment) {
	reasons := map[string]int{}
	for _, p := range ps {
		switch p.Outcome {
		case analytics.PaymentSucceeded:
			r.Payments.Succeeded++
		case analytics.PaymentFailed:
			r.Payments.Failed++
			reason := p.Reason
			if reason == "" {
				reason = "unknown"
			}
			reasons[reason]++
		}
	}
	if n := r.Payments.Succeeded + r.Payments.Failed; n > 0 {
		r.Payments.FailureRate = float64(r.Payments.Failed) / float64(n)
	}
	for k, v := range reasons {
		r.Payments.Reasons = append(r.Payments.Reasons, ReasonCount{Reason: k, Count: v})
	}
	sort.Slice(r.Payments.Reasons, func(i, j int) bool {
		a, b := r.Payments.Reasons[i], r.Payments.Reasons[j]
		return a.Count > b.Count || (a.Count == b.Count && a.Reason < b.Reason)
	})
}

func (r *Report) conversion(d Data) {
	ordered := map[string]bool{}
	for _, o := range d.Orders {
		if o.CartID == "" {
			r.Conversion.OrdersWithoutCart++
		} else {
			ordered[o.CartID] = true
		}
	}
	carts := map[string]bool{}
	for _, c := range d.Carts {
		if carts[c.CartID] {
			continue
		}
		carts[c.CartID] = true
		r.Conversion.CartsCreated++
		if ordered[c.CartID] {
			r.Conversion.CartsConverted++
		}
	}
	if r.Conversion.CartsCreated > 0 {
		r.Conversion.Rate = float64(r.Conversion.CartsConverted) / float64(r.Conversion.CartsCreated)
	}
}

func (r *Report) sellOut(d Data) {
	soldAt := map[string]time.Time{}
	for _, s := range d.Stock {
		if s.Available > 0 {
			continue
		}
		if t, ok := soldAt[s.SKU]; !ok || s.ObservedAt.Before(t) {
			soldAt[s.SKU] = s.ObservedAt
		}
	}
	by := map[string]*SellOut{}
	for _, l := range d.OrderLines {
		at, ok := soldAt[l.SKU]
		if !ok || l.PlacedAt.After(at) {
			continue
		}
		s := by[l.SKU]
		if s == nil {
			s = &SellOut{SKU: l.SKU, FirstOrderAt: l.PlacedAt, LastUnitAt: l.PlacedAt}
			by[l.SKU] = s
		}
		s.Orders++
		s.Units += int(l.Quantity)
		if l.PlacedAt.Before(s.FirstOrderAt) {
			s.FirstOrderAt = l.PlacedAt
		}
		if l.PlacedAt.After(s.LastUnitAt) {
			s.LastUnitAt = l.PlacedAt
		}
	}
	for _, s := range by {
		s.Duration = s.LastUnitAt.Sub(s.FirstOrderAt)
		r.SellOut = append(r.SellOut, *s)
	}
	sort.Slice(r.SellOut, func(i, j int) bool {
		a, b := r.SellOut[i], r.SellOut[j]
		return a.Duration > b.Duration || (a.Duration == b.Duration && a.SKU < b.SKU)
	})
}

func (r *Report) toPaid(d Data) {
	placed := map[string]time.Time{}
	for _, o := range d.Orders {
		placed[o.OrderID] = o.PlacedAt
	}
	var ds []time.Duration
	done := map[string]bool{}
	for _, s := range d.StatusChanges {
		if s.Status != "PAID" || done[s.OrderID] {
			continue
		}
		if at, ok := placed[s.OrderID]; ok {
			done[s.OrderID] = true
			ds = append(ds, s.OccurredAt.Sub(at))
		}
	}
	r.ToPaid = percentiles(ds)
}

// percentiles uses the nearest-rank method: the p-th percentile is the smallest value
// with at least p% of the values at or below it.
func percentiles(ds []time.Duration) Percentiles {
	p := Percentiles{Count: len(ds)}
	if len(ds) == 0 {
		return p
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	rank := func(pct int) time.Duration {
		i := (pct*len(ds)+99)/100 - 1 // ceil(pct/100 * n), 1-based
		return ds[min(max(i, 0), len(ds)-1)]
	}
	p.P50, p.P90, p.P99, p.Max = rank(50), rank(90), rank(99), ds[len(ds)-1]
	return p
}
