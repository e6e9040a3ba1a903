package auth

import (
	"encoding/json"
	"net/http"
	"regexp"
	"time"
)

// devName is what a development sign-in accepts as a customer's name: it becomes the
// token's sub, so it is kept to letters, digits and ". _ -", and never a partner's
// namespace (it has no colon).
var devName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// DevTokenLifetime is how long a development sign-in's token lasts (within the
// verifier's JWT_MAX_LIFETIME).
const DevTokenLifetime = 12 * time.Hour

// DevTokenHandler is the development sign-in of the storefront starter: POST
// {"name":"alice"} answers {"token":"<JWT>","subject":"alice"}, a customer's token
// (no roles) signed with secret and opt as the service verifies them. It hands a token
// to anyone who asks, so the service mounts it (POST /dev/token) only outside
// production; a real shop signs its customers in with its own identity provider.
func DevTokenHandler(secret string, opt Options) http.Handler {
	ttl := DevTokenLifetime
	if opt.MaxLifetime > 0 && opt.MaxLifetime < ttl {
		ttl = opt.MaxLifetime
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		answer := func(status int, body any) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(body)
		}
		var in struct {
			Name string `json:"name"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&in); err != nil {
			answer(http.StatusBadRequest, map[string]string{"code": "BAD_REQUEST", "message": `the body must be {"name": "<your name>"}`})
			return
		}
		if !devName.MatchString(in.Name) {
			answer(http.StatusBadRequest, map[string]string{"code": "INVALID_INPUT",
				"message": "a name is 1 to 64 letters, digits, dots, underscores or hyphens"})
			return
		}
		token, err := SignFor(secret, opt, in.Name, nil, ttl)
		if err != nil {
			answer(http.StatusInternalServerError, map[string]string{"code": "INTERNAL_SERVER_ERROR", "message": "could not sign a token"})
			return
		}
		answer(http.StatusOK, map[string]string{"token": token, "subject": in.Name})
	})
}
