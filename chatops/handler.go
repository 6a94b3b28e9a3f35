package chatops

import (
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Handler serves POST /slack/commands and POST /slack/interactions: the `/fleetwave` slash
// command and the approval buttons. Every request must carry a valid Slack signature, and a
// user's right to act is checked against the rollout's status before Rollouts.Do, so a
// refused vote or control never reaches Temporal (whose validators check again).
//
// A Handler must not be copied after first use.
type Handler struct {
	// SigningSecret is the Slack app's signing secret. It is required: "" refuses every
	// request (401), so a missing setting fails closed rather than open.
	SigningSecret string
	Rollouts      Rollouts
	// Groups resolves "@group" operators; nil means such entries match nobody. Approvers need
	// no lookup: the workflow resolved them into ApprovalStatus.Eligible.
	Groups Groups
	Log    *slog.Logger
	// HTTP posts answers to a button press's response_url; nil means a client with a 10 s
	// timeout.
	HTTP *http.Client
	// ResponseHosts are where a response_url may point, as "scheme://hostname"; nil means
	// Slack's own (https://hooks.slack.com, https://hooks.slack-gov.com). A signed request
	// naming another host is refused: fleetwave never posts where a payload tells it to.
	ResponseHosts []string
	// Now tells whether an approval request is still open; nil means time.Now. Signature
	// timestamps are always checked against the real clock by slack-go.
	Now func() time.Time

	// Count, when set, is told of every request refused or malformed and every action
	// accepted, refused or failed (one of the Event* names), for metrics.
	Count func(event string)

	// commandTimeout overrides the slash command budget (tests shorten it).
	commandTimeout time.Duration
	// pending counts button presses still being worked on, for wait.
	pending sync.WaitGroup
	// seen holds the signatures of requests accepted within the replay window, so the same
	// signed request is accepted once.
	seenMu sync.Mutex
	seen   map[string]time.Time
	swept  time.Time
}

// Register routes the handler's endpoints on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /slack/commands", h.Commands)
	mux.HandleFunc("POST /slack/interactions", h.Interactions)
}

// What Handler.Count is told.
const (
	EventRequestRefused = "request_refused" // unsigned, wrongly signed, replayed or too large: 401/413
	EventBadRequest     = "bad_request"     // signed but malformed: 400
	EventActionRefused  = "action_refused"  // the user has no right to it: nothing sent to Temporal
	EventActionAccepted = "action_accepted" // sent to Temporal and accepted
	EventActionFailed   = "action_failed"   // sent to Temporal and refused or failed
)

func (h *Handler) count(event string) {
	if h.Count != nil {
		h.Count(event)
	}
}

func (h *Handler) badRequest(w http.ResponseWriter, msg string) {
	h.count(EventBadRequest)
	http.Error(w, msg, http.StatusBadRequest)
}

func (h *Handler) log() *slog.Logger {
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}
