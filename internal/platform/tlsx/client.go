package tlsx

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Client returns the tls.Config of a connection to a dependency: the server is verified
// against f.CA (the system's roots when empty) and serverName; the client certificate of
// f.Cert and f.Key, when named, is presented, and loaded again on the next connection
// after its files change. The files must be valid now: that error is returned.
func Client(f Files, serverName string, logger *slog.Logger) (*tls.Config, error) {
	if err := f.check("tls"); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if f.CA != "" {
		pool, err := LoadPool(f.CA)
		if err != nil {
			return nil, fmt.Errorf("tls: CA: %w", err)
		}
		c.RootCAs = pool
	}
	if f.Cert != "" {
		w := &watched[*tls.Certificate]{
			paths: []string{f.Cert, f.Key},
			load:  func() (*tls.Certificate, error) { return loadKeyPair(f.Cert, f.Key) },
			onFail: func(err error) {
				logger.Warn("tls: client certificate reload failed; presenting the previous one", "file", f.Cert, "error", err)
			},
		}
		if err := w.init(); err != nil {
			return nil, fmt.Errorf("tls: client certificate %s: %w", f.Cert, err)
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return w.get(), nil }
	}
	return c, nil
}

// AMQPURL adds f to every amqps:// URL of raw (AMQP_URL, one URL or several separated
// by commas) as the query parameters amqp091-go reads on each dial: cacertfile,
// certfile and keyfile (a parameter the URL already has is kept). So a reconnection
// presents the certificate in the files at that moment. The files are loaded once here
// to fail at start, not at the first dial. Files with an amqp:// URL are an error: they
// would be silently ignored.
func AMQPURL(raw string, f Files) (string, error) {
	if f.Empty() {
		return raw, nil
	}
	if err := f.check("AMQP_TLS_CERT_FILE and AMQP_TLS_KEY_FILE"); err != nil {
		return "", err
	}
	if _, err := Client(f, "", slog.New(slog.DiscardHandler)); err != nil {
		return "", fmt.Errorf("AMQP_TLS_*: %w", err)
	}
	urls := strings.Split(raw, ",")
	for i, s := range urls {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			return "", fmt.Errorf("AMQP_URL: %w", err)
		}
		if u.Scheme != "amqps" {
			return "", fmt.Errorf("AMQP_TLS_* files are set but AMQP_URL is %s://, not amqps://", u.Scheme)
		}
		q := u.Query()
		for k, v := range map[string]string{"cacertfile": f.CA, "certfile": f.Cert, "keyfile": f.Key} {
			if v != "" && q.Get(k) == "" {
				q.Set(k, v)
			}
		}
		u.RawQuery = q.Encode()
		urls[i] = u.String()
	}
	return strings.Join(urls, ","), nil
}

// RedisOptions parses REDIS_URL (go-redis's syntax). For rediss:// the server is
// verified against f.CA (the system's roots when empty) and f's client certificate is
// presented when named; skip_verify=true is refused. Files with a redis:// URL are an
// error: they would be silently ignored.
func RedisOptions(raw string, f Files, logger *slog.Logger) (*redis.Options, error) {
	opt, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	if opt.TLSConfig == nil {
		if !f.Empty() {
			return nil, fmt.Errorf("REDIS_TLS_* files are set but REDIS_URL is not rediss://")
		}
		return opt, nil
	}
	if opt.TLSConfig.InsecureSkipVerify {
		return nil, fmt.Errorf("REDIS_URL: skip_verify=true turns off the verification of the server: give its CA in REDIS_TLS_CA_FILE instead")
	}
	c, err := Client(f, opt.TLSConfig.ServerName, logger)
	if err != nil {
		return nil, fmt.Errorf("REDIS_TLS_*: %w", err)
	}
	opt.TLSConfig = c
	return opt, nil
}
