package pushevent

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Push intake errors; an HTTP front end maps them to status codes.
var (
	// ErrSignature means a push event's signature is missing or wrong, or no secret is
	// configured: intake fails closed.
	ErrSignature = errors.New("invalid signature")
	// ErrPayload means a push event body is not what the format says.
	ErrPayload = errors.New("malformed push event")
)

// SignatureHeader carries the HMAC of a generic push event: "sha256=" + hex(HMAC-SHA256(secret, body)).
const SignatureHeader = "X-Fleetwave-Signature"

// Event is a push as fleetwave needs it, whatever host sent it.
type Event struct {
	// Host is who sent it (HostGitHub, ...) and Delivery its delivery ID, when the host gives one.
	Host       string `json:"-"`
	Delivery   string `json:"-"`
	Repository string `json:"repository"`
	// Pusher is who pushed, as the host names them (a login), when it says.
	Pusher string `json:"pusher,omitempty"`
	Ref    string `json:"ref"`
	Before string `json:"before,omitempty"`
	After  string `json:"after"`
}

// Branch returns the branch the push updated, or "" for tags and other refs.
func (e Event) Branch() string {
	b, ok := strings.CutPrefix(e.Ref, "refs/heads/")
	if !ok {
		return ""
	}
	return b
}

// Deleted reports whether the push deleted the ref.
func (e Event) Deleted() bool {
	return strings.Trim(e.After, "0") == ""
}

// Sign returns the signature header value of body for secret.
func Sign(body, secret []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks a "sha256=<hex>" signature of body in constant time. An empty secret
// never verifies.
func VerifySignature(body []byte, signature string, secret []byte) error {
	if len(secret) == 0 {
		return fmt.Errorf("%w: no webhook secret configured", ErrSignature)
	}
	got, ok := strings.CutPrefix(signature, "sha256=")
	if !ok {
		return fmt.Errorf("%w: missing sha256= signature", ErrSignature)
	}
	sum, err := hex.DecodeString(got)
	if err != nil {
		return fmt.Errorf("%w: signature is not hex", ErrSignature)
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	if !hmac.Equal(sum, m.Sum(nil)) {
		return fmt.Errorf("%w: signature does not match", ErrSignature)
	}
	return nil
}

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// ParseGeneric decodes fleetwave's generic push event:
//
//	{"repository": "fleet", "ref": "refs/heads/main", "before": "<sha>", "after": "<sha>"}
func ParseGeneric(body []byte) (Event, error) {
	var e Event
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrPayload, err)
	}
	switch {
	case e.Ref == "":
		return Event{}, fmt.Errorf("%w: field ref is missing", ErrPayload)
	case !shaRE.MatchString(e.After):
		return Event{}, fmt.Errorf("%w: field after must be a 40-character commit hash, got %q", ErrPayload, e.After)
	case e.Before != "" && !shaRE.MatchString(e.Before):
		return Event{}, fmt.Errorf("%w: field before must be a 40-character commit hash, got %q", ErrPayload, e.Before)
	}
	return e, nil
}
