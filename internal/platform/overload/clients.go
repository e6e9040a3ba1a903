package overload

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/realclientip/realclientip-go"

	"github.com/checkout-backend/checkout/internal/platform/auth"
)

// Clients tells which client a request comes from. Behind a reverse proxy every request
// comes from the proxy's address: the client's address is then read from the header the
// proxy sets, but only when the request does come from a trusted proxy (otherwise anyone
// could name any address), and from the right end of the header (the entries a client
// sends itself come first): the rightmost address that is not a trusted proxy's.
//
// An anonymous client is its IPv4 address, but its IPv6 prefix (IPv6Prefix bits, /64 by
// default): a host is given a whole /64 (an ISP's customer often a /56 or /48) and picks
// any address in it, so keying by address would give one host 2^64 buckets.
type Clients struct {
	// IPv6Prefix is how many leading bits of an IPv6 address name an anonymous client
	// (CLIENT_IPV6_PREFIX; 0 is DefaultIPv6Prefix).
	IPv6Prefix int

	trusted  []netip.Prefix
	strategy realclientip.Strategy
}

// DefaultIPv6Prefix is the IPv6 prefix of one anonymous client: the /64 of a host.
const DefaultIPv6Prefix = 64

// NewClients trusts the proxies in trusted (TRUSTED_PROXIES), which set header:
// X-Forwarded-For ("" is that) or Forwarded (RFC 7239). Name the one header your proxy
// overwrites or appends to: a client can send the other one, and it would be believed.
func NewClients(trusted []netip.Prefix, header string) (*Clients, error) {
	if header == "" {
		header = "X-Forwarded-For"
	}
	nets := make([]net.IPNet, len(trusted))
	for i, p := range trusted {
		p = p.Masked()
		nets[i] = net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	}
	strategy, err := realclientip.NewRightmostTrustedRangeStrategy(header, nets)
	if err != nil {
		return nil, fmt.Errorf("CLIENT_IP_HEADER: %w", err)
	}
	return &Clients{trusted: trusted, strategy: strategy}, nil
}

// ParsePrefixes reads a list of CIDR prefixes or single addresses (TRUSTED_PROXIES).
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("TRUSTED_PROXIES: %q is neither a CIDR prefix (10.0.0.0/8) nor an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Key names the caller: "sub:<JWT subject>" when auth ran before and the token was good,
// else AnonymousKeyPrefix and its address: an IPv4 address (IPv4-mapped IPv6 is
// IPv4), or the IPv6Prefix prefix of an IPv6 address ("ip:2001:db8:1:2::/64").
func (c *Clients) Key(r *http.Request) string {
	if a, err := auth.FromContext(r.Context()); err == nil && a.CustomerID != "" {
		return "sub:" + a.CustomerID
	}
	return AnonymousKeyPrefix + c.anonymous(c.Addr(r))
}

func (c *Clients) anonymous(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	bits := c.IPv6Prefix
	if bits <= 0 || bits > 128 {
		bits = DefaultIPv6Prefix
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// Addr is the client's address: the peer's, or when the peer is a trusted proxy, the
// rightmost untrusted address of the forwarding header (the peer's if there is none).
func (c *Clients) Addr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil || c.strategy == nil || !c.isTrusted(peer.Unmap()) {
		return host
	}
	if ip := c.strategy.ClientIP(r.Header, r.RemoteAddr); ip != "" {
		return ip
	}
	return host
}

func (c *Clients) isTrusted(a netip.Addr) bool {
	for _, p := range c.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
