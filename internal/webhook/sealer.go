package webhook

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// sealedPrefix starts a sealed secret: "sealed:v1:<key id>:<base64 of nonce and
// ciphertext>".
const sealedPrefix = "sealed:v1:"

// Sealer encrypts webhook signing secrets at rest with AES-256-GCM, under keys from the
// environment (WEBHOOK_SECRET_KEY), so a copy of the database alone does not let anyone
// sign deliveries as this service. A sealed secret names the key that sealed it, and is
// bound to its webhook's id (a sealed value copied to another row does not open).
//
// Rotation: put the new key first and keep the old ones after it
// ("k2:<new>,k1:<old>"): new secrets are sealed with the first, every listed key opens.
// Reseal rewrites an old value under the first key; once no row names an old key, drop
// it from the list.
//
// A nil *Sealer (no key configured) stores secrets as they are. A stored secret without
// the sealed prefix (one stored before sealing was turned on) opens as it is.
type Sealer struct {
	current string
	keys    map[string]cipher.AEAD
}

// NewSealer reads WEBHOOK_SECRET_KEY: comma-separated "<id>:<key>" entries, each key 32
// bytes in standard base64 (openssl rand -base64 32), ids of letters, digits, '-' and
// '_'. The first entry seals. An empty spec is a nil Sealer.
func NewSealer(spec string) (*Sealer, error) {
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	s := &Sealer{keys: map[string]cipher.AEAD{}}
	for i, entry := range strings.Split(spec, ",") {
		id, b64, ok := strings.Cut(strings.TrimSpace(entry), ":")
		if !ok || !validKeyID(id) {
			return nil, fmt.Errorf("WEBHOOK_SECRET_KEY: entry %d is not <id>:<base64 key> with an id of letters, digits, - and _", i+1)
		}
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("WEBHOOK_SECRET_KEY: key %q is not 32 bytes in base64", id)
		}
		if _, dup := s.keys[id]; dup {
			return nil, fmt.Errorf("WEBHOOK_SECRET_KEY: key id %q is listed twice", id)
		}
		block, _ := aes.NewCipher(key)
		s.keys[id], _ = cipher.NewGCM(block)
		if i == 0 {
			s.current = id
		}
	}
	return s, nil
}

func validKeyID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Seal returns what to store for the secret of webhook webhookID.
func (s *Sealer) Seal(webhookID, secret string) (string, error) {
	if s == nil {
		return secret, nil
	}
	aead := s.keys[s.current]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal webhook secret: %w", err)
	}
	box := aead.Seal(nonce, nonce, []byte(secret), []byte(webhookID))
	return sealedPrefix + s.current + ":" + base64.RawStdEncoding.EncodeToString(box), nil
}

// ErrUnsealable is returned for a sealed secret that cannot be opened: its key is not
// configured, or it was altered or belongs to another webhook.
var ErrUnsealable = errors.New("webhook secret cannot be opened")

// Open returns the secret of webhook webhookID from what the store holds.
func (s *Sealer) Open(webhookID, stored string) (string, error) {
	rest, sealed := strings.CutPrefix(stored, sealedPrefix)
	if !sealed {
		return stored, nil
	}
	id, b64, _ := strings.Cut(rest, ":")
	if s == nil {
		return "", fmt.Errorf("%w: it is sealed with key %q and WEBHOOK_SECRET_KEY is not set", ErrUnsealable, id)
	}
	aead, ok := s.keys[id]
	if !ok {
		return "", fmt.Errorf("%w: key %q is not in WEBHOOK_SECRET_KEY", ErrUnsealable, id)
	}
	box, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil || len(box) < aead.NonceSize() {
		return "", fmt.Errorf("%w: malformed", ErrUnsealable)
	}
	secret, err := aead.Open(nil, box[:aead.NonceSize()], box[aead.NonceSize():], []byte(webhookID))
	if err != nil {
		return "", fmt.Errorf("%w: it was altered or belongs to another webhook", ErrUnsealable)
	}
	return string(secret), nil
}

// Reseal returns stored sealed under the current key, and whether that changed anything
// (a value already under the current key is returned as is).
func (s *Sealer) Reseal(webhookID, stored string) (string, bool, error) {
	if s == nil || strings.HasPrefix(stored, sealedPrefix+s.current+":") {
		return stored, false, nil
	}
	secret, err := s.Open(webhookID, stored)
	if err != nil {
		return "", false, err
	}
	sealed, err := s.Seal(webhookID, secret)
	return sealed, err == nil, err
}

// Sign opens a stored secret and signs a delivery with it (see the package's Sign).
func (s *Sealer) Sign(webhookID, stored string, t time.Time, body []byte) (string, error) {
	secret, err := s.Open(webhookID, stored)
	if err != nil {
		return "", err
	}
	return Sign(secret, t, body), nil
}
