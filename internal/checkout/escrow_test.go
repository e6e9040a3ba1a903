package checkout

import (
	"strings"
	"testing"
)

// TestCheckEscrow_CatchesWhatEscrowForbids: the checker passes a ledger that keeps the
// invariant (stock in transit included) and names each violation: the negative control
// of two regions each given the whole stock (no escrow), a credit never granted, a
// credit that differs from its grant, and more credited than granted.
func TestCheckEscrow_CatchesWhatEscrowForbids(t *testing.T) {
	grant := TransferRecord{SKU: "S", Region: "us", Quantity: 3}
	credit := TransferRecord{SKU: "S", Region: "eu", Quantity: 3}
	ok := []RegionLedger{
		{Region: "eu", OnHand: map[string]int{"S": 7}, Given: map[string]TransferRecord{"t1": grant, "t2": grant}},
		{Region: "us", OnHand: map[string]int{"S": 3}, Credited: map[string]TransferRecord{"t1": credit}},
	}
	// eu had 13, gave 3 (credited) and 3 (in transit); us had 0.
	if bad := CheckEscrow(ok, map[string]int{"S": 13}); len(bad) > 0 {
		t.Fatalf("a sound ledger: %v", bad)
	}
	if n := InTransit(ok)["S"]; n != 3 {
		t.Fatalf("in transit %d, want 3", n)
	}
	for name, c := range map[string]struct {
		ledgers []RegionLedger
		want    string
	}{
		"each region given the whole stock": {[]RegionLedger{
			{Region: "eu", OnHand: map[string]int{"S": 10}}, {Region: "us", OnHand: map[string]int{"S": 10}}}, "= 20, want 10"},
		"a credit never granted": {[]RegionLedger{
			{Region: "eu", OnHand: map[string]int{"S": 7}},
			{Region: "us", OnHand: map[string]int{"S": 3}, Credited: map[string]TransferRecord{"t9": credit}}}, "never granted"},
		"a credit unlike its grant": {[]RegionLedger{
			{Region: "eu", OnHand: map[string]int{"S": 7}, Given: map[string]TransferRecord{"t1": grant}},
			{Region: "us", OnHand: map[string]int{"S": 5}, Credited: map[string]TransferRecord{"t1": {SKU: "S", Region: "eu", Quantity: 5}}}}, "credited 5"},
		"more credited than granted": {[]RegionLedger{
			{Region: "eu", OnHand: map[string]int{"S": 10}, Given: map[string]TransferRecord{"t1": {SKU: "S", Region: "us", Quantity: 0}}},
			{Region: "us", OnHand: map[string]int{"S": 0}, Credited: map[string]TransferRecord{"t1": {SKU: "S", Region: "eu", Quantity: 0}, "t2": credit}}}, "\nS: -3 in transit\n"},
	} {
		bad := CheckEscrow(c.ledgers, map[string]int{"S": 10})
		if !strings.Contains("\n"+strings.Join(bad, "\n")+"\n", c.want) { // want may be a whole line
			t.Errorf("%s: %v, want a line with %q", name, bad, c.want)
		}
	}
}
