// Package tlsx builds the service's TLS configurations from PEM files: the HTTPS
// listener's (its certificate, and the CA client certificates must chain to, both reloaded
// on the next handshake after their files change) and the clients' to RabbitMQ and Redis
// (a CA that verifies the server, a client certificate reloaded the same way), and a
// small CA for development and tests (checkout certs dev). Nothing here ever skips
// verification.
package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
)

// Files names the PEM files of one side of a TLS connection: CA verifies the peer,
// Cert and Key are this side's certificate (chain) and private key. Any may be empty.
type Files struct {
	CA, Cert, Key string
}

// Empty reports whether no file is named.
func (f Files) Empty() bool { return f.CA == "" && f.Cert == "" && f.Key == "" }

// check refuses a certificate without its key or a key without its certificate.
func (f Files) check(what string) error {
	if (f.Cert == "") != (f.Key == "") {
		return fmt.Errorf("%s: a client certificate needs both its certificate and its key file", what)
	}
	return nil
}

// LoadPool reads a PEM file of CA certificates; a file with none is an error (an empty
// pool would refuse every peer, or with RootCAs nil trust the system's).
func LoadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

// loadKeyPair is tls.LoadX509KeyPair with the leaf parsed (for logs and expiry).
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// watched holds a value loaded from files and loads it again when a stat shows that one
// of them changed: rewritten in place (size, modification time) or replaced (another
// inode, as a rename or a Kubernetes secret volume's symlink swap makes). A stat costs
// about a microsecond, so it is done on every use (each TLS handshake) rather than by a
// watcher goroutine. A load that fails keeps the previous value and is retried once the
// files change again (a certificate written before its key, for instance).
type watched[T any] struct {
	paths  []string
	load   func() (T, error)
	onLoad func(T)
	onFail func(error)

	mu   sync.Mutex
	seen []os.FileInfo // at the last load attempt
	val  T
	gen  uint64 // counts the loads that succeeded
}

// init loads the value for the first time; its error is the caller's.
func (w *watched[T]) init() error {
	infos, err := w.stat()
	if err != nil {
		return err
	}
	v, err := w.load()
	if err != nil {
		return err
	}
	w.seen, w.val, w.gen = infos, v, 1
	if w.onLoad != nil {
		w.onLoad(v)
	}
	return nil
}

// get returns the current value, loading it again first when the files changed.
func (w *watched[T]) get() T {
	v, _ := w.current()
	return v
}

// current is get that also returns the value's generation, which changes with each load.
func (w *watched[T]) current() (T, uint64) {
	infos, err := w.stat()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil || same(infos, w.seen) {
		// A file missing for a moment (a swap in progress) keeps the value in hand.
		return w.val, w.gen
	}
	w.seen = infos
	v, err := w.load()
	if err != nil {
		if w.onFail != nil {
			w.onFail(err)
		}
		return w.val, w.gen
	}
	w.val = v
	w.gen++
	if w.onLoad != nil {
		w.onLoad(v)
	}
	return v, w.gen
}

func (w *watched[T]) stat() ([]os.FileInfo, error) {
	infos := make([]os.FileInfo, len(w.paths))
	var errs []error
	for i, p := range w.paths {
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		infos[i] = fi
	}
	return infos, errors.Join(errs...)
}

func same(a, b []os.FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] == nil || b[i] == nil || !os.SameFile(a[i], b[i]) || a[i].Size() != b[i].Size() || !a[i].ModTime().Equal(b[i].ModTime()) {
			return false
		}
	}
	return true
}
