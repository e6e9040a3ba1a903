package checkout

import "strconv"

// Price is a product's current price.
type Price struct {
	Cents    int64
	Currency string
}

// PriceLines prices each line at its product's current price and totals the order. Every
// line must name a known product, and all lines one currency. field is the input path of
// the lines; fromCart reports errors on the cart as a whole (its lines are not input).
func PriceLines(lines []Line, prices map[string]Price, field []string, fromCart bool) (items []OrderItem, total int64, currency string, err error) {
	items = make([]OrderItem, len(lines))
	for i, l := range lines {
		f := field
		if !fromCart {
			f = append(append([]string{}, field...), strconv.Itoa(i), "sku")
		}
		p, ok := prices[l.SKU]
		if !ok {
			return nil, 0, "", Errorf(UnknownSKU, f, "unknown sku %q", l.SKU)
		}
		if currency == "" {
			currency = p.Currency
		} else if p.Currency != currency {
			return nil, 0, "", Errorf(InvalidInput, f, "all items of an order must share one currency; %s is in %s, not %s", l.SKU, p.Currency, currency)
		}
		items[i] = OrderItem{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: p.Cents}
		total += p.Cents * int64(l.Quantity)
	}
	return items, total, currency, nil
}
