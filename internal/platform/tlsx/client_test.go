package tlsx_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/checkout-backend/checkout/internal/node"
	"github.com/checkout-backend/checkout/internal/platform/tlsx"
)

func TestAMQPURL_AddsTheFilesToEveryAMQPSURL(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "ca")
	cert, key := p.client("client", "checkout")
	f := tlsx.Files{CA: p.CA, Cert: cert, Key: key}
	got, err := tlsx.AMQPURL("amqps://u:pw@mq1:5671/vh, amqps://u:pw@mq2:5671/vh?heartbeat=5&cacertfile=/etc/own-ca.pem", f)
	if err != nil {
		t.Fatal(err)
	}
	urls := strings.Split(got, ",")
	if len(urls) != 2 {
		t.Fatalf("%q: want two URLs", got)
	}
	for i, want := range []map[string]string{
		{"cacertfile": p.CA, "certfile": cert, "keyfile": key},
		{"cacertfile": "/etc/own-ca.pem", "certfile": cert, "keyfile": key, "heartbeat": "5"},
	} {
		u, err := url.Parse(urls[i])
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if u.Query().Get(k) != v {
				t.Errorf("URL %d %s=%q, want %q (%s)", i, k, u.Query().Get(k), v, urls[i])
			}
		}
		if u.User.String() != "u:pw" || u.Path != "/vh" {
			t.Errorf("URL %d lost its user or vhost: %s", i, urls[i])
		}
	}
	if same, err := tlsx.AMQPURL("amqp://u:pw@mq/", tlsx.Files{}); err != nil || same != "amqp://u:pw@mq/" {
		t.Errorf("without files: %q, %v", same, err)
	}
	for name, tc := range map[string]struct {
		url string
		f   tlsx.Files
	}{
		"files with amqp://":  {"amqp://u:pw@mq/", f},
		"certificate, no key": {"amqps://u:pw@mq/", tlsx.Files{CA: p.CA, Cert: cert}},
		"missing CA file":     {"amqps://u:pw@mq/", tlsx.Files{CA: p.CA + ".missing"}},
		"key of another pair": {"amqps://u:pw@mq/", tlsx.Files{Cert: cert, Key: p.issuedKey("other")}},
	} {
		if got, err := tlsx.AMQPURL(tc.url, tc.f); err == nil {
			t.Errorf("%s: accepted as %s", name, got)
		}
	}
}

// issuedKey issues a throwaway client certificate and returns its key's file.
func (p *pki) issuedKey(name string) string {
	_, key := p.client(name, name)
	return key
}

func TestRedisOptions_MutualTLS_VerifiedBothWays(t *testing.T) {
	t.Parallel()
	p, stranger := newPKI(t, "redis ca"), newPKI(t, "another ca")
	srvCert, srvKey := p.server("redis")
	probeCert, probeKey := p.client("probe", "probe")
	n := node.StartRedisTLS(t, node.RedisTLS{CertFile: srvCert, KeyFile: srvKey, CAFile: p.CA, ProbeCert: probeCert, ProbeKey: probeKey})
	cert, key := p.client("service", "checkout")
	url := n.URL()
	ping := func(f tlsx.Files, rawURL string) error {
		opt, err := tlsx.RedisOptions(rawURL, f, quiet())
		if err != nil {
			return err
		}
		opt.DialTimeout, opt.MaxRetries = 5*time.Second, -1
		c := redis.NewClient(opt)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return c.Ping(ctx).Err()
	}
	if err := ping(tlsx.Files{CA: p.CA, Cert: cert, Key: key}, url); err != nil {
		t.Fatalf("rediss:// with the CA and a client certificate: %v", err)
	}
	for name, tc := range map[string]struct {
		f   tlsx.Files
		url string
	}{
		"no client certificate":             {tlsx.Files{CA: p.CA}, url},
		"server not trusted (another CA)":   {tlsx.Files{CA: stranger.CA, Cert: cert, Key: key}, url},
		"server not trusted (system roots)": {tlsx.Files{Cert: cert, Key: key}, url},
		"skip_verify in the URL":            {tlsx.Files{CA: p.CA, Cert: cert, Key: key}, url + "?skip_verify=true"},
		"files with redis://":               {tlsx.Files{CA: p.CA}, fmt.Sprintf("redis://127.0.0.1:%d/0", n.Port)},
	} {
		if err := ping(tc.f, tc.url); err == nil {
			t.Errorf("%s: PING answered, want refused", name)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}
	// A client certificate rotated on disk is the one the next connection presents.
	opt, err := tlsx.RedisOptions(url, tlsx.Files{CA: p.CA, Cert: cert, Key: key}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	next, err := p.ca.Issue(tlsx.Leaf{CommonName: "checkout-rotated", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := next.WriteFiles(cert, key); err != nil {
		t.Fatal(err)
	}
	presented, err := opt.TLSConfig.GetClientCertificate(nil)
	if err != nil || presented.Leaf.SerialNumber.Cmp(next.Cert.SerialNumber) != 0 {
		t.Fatalf("after rotation the client presents %v (%v), want serial %s", presented.Leaf.Subject, err, next.Cert.SerialNumber)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING with the rotated client certificate: %v", err)
	}
}
