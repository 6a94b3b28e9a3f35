package chatops

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// DeriveKey derives a key for one purpose from the Slack signing secret, which every server of a
// Slack app has, so that they agree on it without another secret to distribute; the purpose
// keeps the keys of different uses apart. It is nil when there is no secret.
func DeriveKey(signingSecret, purpose string) []byte {
	if signingSecret == "" {
		return nil
	}
	m := hmac.New(sha256.New, []byte(signingSecret))
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// maxRequestBody bounds what the handlers read before the signature is checked, so an
// unauthenticated client cannot make us buffer an arbitrary amount.
const maxRequestBody = 1 << 20

// replayWindow is how long a signed request stays valid: slack-go refuses timestamps more than
// 5 minutes away, so a signature seen in the last 10 minutes covers both directions.
const replayWindow = 10 * time.Minute

// firstUse records a request's signature and reports whether it was not seen before.
func (h *Handler) firstUse(signature string) bool {
	h.seenMu.Lock()
	defer h.seenMu.Unlock()
	now := time.Now()
	if h.seen == nil {
		h.seen = map[string]time.Time{}
	}
	if now.Sub(h.swept) > time.Minute {
		for sig, at := range h.seen {
			if now.Sub(at) > replayWindow {
				delete(h.seen, sig)
			}
		}
		h.swept = now
	}
	// slack-go decodes the hex in either case: "v0=AB.." and "v0=ab.." are the same signature.
	signature = strings.ToLower(signature)
	if at, dup := h.seen[signature]; dup && now.Sub(at) <= replayWindow {
		return false
	}
	h.seen[signature] = now
	return true
}

// verifiedForm is the form of a request whose signature verify accepted; a body that is not a
// form is answered 400.
func (h *Handler) verifiedForm(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	body, ok := h.verify(w, r)
	if !ok {
		return nil, false
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		h.badRequest(w, "malformed form body")
		return nil, false
	}
	return form, true
}

// verify reads the body and checks its Slack signature. On failure it has answered the
// request (401, or 413 for a body over 1 MiB) and logged why, and returns false.
func (h *Handler) verify(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	refuse := func(code int, reason string) ([]byte, bool) {
		// Only the reason is logged: never the secret nor the signature header.
		h.log().Warn("slack request refused", "path", r.URL.Path, "reason", reason, "remote", r.RemoteAddr)
		h.count(EventRequestRefused)
		http.Error(w, http.StatusText(code), code)
		return nil, false
	}
	if h.SigningSecret == "" {
		return refuse(http.StatusUnauthorized, "no signing secret configured")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return refuse(http.StatusRequestEntityTooLarge, "body larger than 1 MiB")
		}
		return refuse(http.StatusBadRequest, "cannot read the body")
	}
	sv, err := slack.NewSecretsVerifier(r.Header, h.SigningSecret)
	if err != nil {
		return refuse(http.StatusUnauthorized, verifyReason(err))
	}
	if _, err := sv.Write(body); err != nil {
		return refuse(http.StatusUnauthorized, verifyReason(err))
	}
	if err := sv.Ensure(); err != nil {
		return refuse(http.StatusUnauthorized, verifyReason(err))
	}
	// A valid signature proves Slack sent the request, not that it is the first time: an
	// eavesdropper could send it again within the 5 minutes slack-go allows.
	if !h.firstUse(r.Header.Get("X-Slack-Signature")) {
		return refuse(http.StatusUnauthorized, "replayed request (same signature seen in the last 10 minutes)")
	}
	return body, true
}

// verifyReason names a verification failure without quoting the request: slack-go's errors
// for a malformed signature or timestamp echo part of the header.
func verifyReason(err error) string {
	switch {
	case errors.Is(err, slack.ErrMissingHeaders), errors.Is(err, slack.ErrExpiredTimestamp), errors.Is(err, slack.ErrInvalidSignature):
		return err.Error()
	case errors.Is(err, hex.ErrLength):
		return "malformed signature"
	}
	if _, ok := errors.AsType[hex.InvalidByteError](err); ok {
		return "malformed signature"
	}
	if _, ok := errors.AsType[*strconv.NumError](err); ok {
		return "malformed timestamp"
	}
	return "invalid signature"
}
