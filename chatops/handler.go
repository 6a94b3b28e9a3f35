package chatops

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/slack-go/slack"

	"github.com/fleetwave/fleetwave/rollout"
)

const (
	// maxRequestBody bounds what the handlers read before the signature is checked, so an
	// unauthenticated client cannot make us buffer an arbitrary amount.
	maxRequestBody = 1 << 20
	// commandTimeout leaves Slack's 3 s budget for a slash command's answer some slack for
	// the network; past it the user is told to check the status instead.
	commandTimeout = 2500 * time.Millisecond
	// interactionTimeout bounds the work behind a button press, which runs after the request
	// was answered.
	interactionTimeout = 30 * time.Second
)

// defaultResponseClient posts to response_url when Handler.HTTP is nil; the timeout keeps a
// slow Slack from piling up goroutines.
var defaultResponseClient = &http.Client{Timeout: 10 * time.Second}

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

// Register routes the handler's endpoints on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /slack/commands", h.Commands)
	mux.HandleFunc("POST /slack/interactions", h.Interactions)
}

// Commands answers the `/fleetwave` slash command. The answer is synchronous and ephemeral:
// Slack shows it only to the user who typed the command.
func (h *Handler) Commands(w http.ResponseWriter, r *http.Request) {
	form, ok := h.verifiedForm(w, r)
	if !ok {
		return
	}
	user := form.Get("user_id")
	if user == "" {
		h.badRequest(w, "missing user_id")
		return
	}
	name := form.Get("command")
	if name == "" {
		name = "/fleetwave"
	}
	timeout := h.commandTimeout
	if timeout <= 0 {
		timeout = commandTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	text := h.command(ctx, name, user, form.Get("text"))

	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(commandReply{ResponseType: slack.ResponseTypeEphemeral, Text: esc(text)})
}

// commandReply is the synchronous answer to a slash command.
type commandReply struct {
	ResponseType string `json:"response_type"`
	Text         string `json:"text"`
}

// responseURLReply is an answer posted to a response_url. ReplaceOriginal is always sent as
// false so the approval request (and its buttons) stays for the other approvers.
type responseURLReply struct {
	ResponseType    string `json:"response_type"`
	ReplaceOriginal bool   `json:"replace_original"`
	Text            string `json:"text"`
}

// command runs one slash command and returns the text to show the user.
func (h *Handler) command(ctx context.Context, name, user, text string) string {
	verb, rest := nextField(text)
	verb = strings.ToLower(verb)
	rolloutID, rest := nextField(rest)
	switch verb {
	case "", "help":
		return commandUsage(name)
	case VerbStatus:
		if rolloutID == "" {
			return h.activeText(ctx)
		}
		st, err := h.Rollouts.Status(ctx, rolloutID)
		if err != nil {
			return h.callFailed(ctx, rolloutID, err)
		}
		return statusText(rolloutID, st)
	case VerbApprove, VerbReject:
		if rolloutID == "" {
			return fmt.Sprintf("%s needs a rollout.\n%s", verb, commandUsage(name))
		}
		st, err := h.Rollouts.Status(ctx, rolloutID)
		if err != nil {
			return h.callFailed(ctx, rolloutID, err)
		}
		// The word after the rollout is the wave only when the rollout has a wave of that
		// name; otherwise it starts the comment ("approve r1 looks good").
		a := Action{Verb: verb, Rollout: rolloutID, User: user, Comment: rest}
		if first, after := nextField(rest); first != "" && findWave(st, first) != nil {
			a.Wave, a.Comment = first, after
		}
		return h.vote(ctx, st, a)
	case VerbPause, VerbResume, VerbAbort, VerbRollback:
		if rolloutID == "" {
			return fmt.Sprintf("%s needs a rollout.\n%s", verb, commandUsage(name))
		}
		st, err := h.Rollouts.Status(ctx, rolloutID)
		if err != nil {
			return h.callFailed(ctx, rolloutID, err)
		}
		return h.control(ctx, st, Action{Verb: verb, Rollout: rolloutID, User: user, Comment: rest})
	}
	return fmt.Sprintf("Unknown command %q.\n%s", verb, commandUsage(name))
}

// commandUsage explains the slash command, under the name the app gave it.
func commandUsage(name string) string {
	return "Usage:\n" +
		"`" + name + " status [rollout]`: the active rollouts, or one rollout's waves\n" +
		"`" + name + " approve <rollout> [wave] [comment]`: vote for the wave waiting for approval\n" +
		"`" + name + " reject <rollout> [wave] [comment]`: vote against it, which rejects it\n" +
		"`" + name + " pause|resume|abort|rollback <rollout> [reason]`: control a rollout (operators only)"
}

// activeText lists the running rollouts, one line each.
func (h *Handler) activeText(ctx context.Context) string {
	active, err := h.Rollouts.Active(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return "fleetwave got no answer from Temporal in time; try again."
		}
		return "Cannot list the active rollouts: " + err.Error()
	}
	if len(active) == 0 {
		return "No active rollouts."
	}
	lines := []string{"Active rollouts:"}
	for _, a := range active {
		line := fmt.Sprintf("• `%s` %s", a.Rollout, a.State)
		if a.Wave != "" {
			line += ", wave " + a.Wave
		}
		if a.Commit != "" {
			line += ", commit `" + rollout.Short(a.Commit) + "`"
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// statusText is a compact status of one rollout: the rollout, each wave, where an approval
// stands and why the rollout ended.
func statusText(id string, st rollout.Status) string {
	head := fmt.Sprintf("`%s`: %s", id, st.State)
	if st.Fleet != "" {
		head += ", fleet " + st.Fleet
	}
	if st.Commit != "" {
		head += ", commit `" + rollout.Short(st.Commit) + "`"
	}
	if st.Wave != "" {
		head += ", wave " + st.Wave
	}
	lines := []string{head}
	if st.Reason != "" {
		lines = append(lines, "Reason: "+st.Reason)
	}
	for _, w := range st.Waves {
		line := fmt.Sprintf("• %s: %s", w.Name, w.State)
		if w.Approval != nil {
			line += ": " + w.Approval.Summary()
		} else if w.Message != "" {
			line += ": " + w.Message
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

// vote checks that a.User may vote on the wave (the one waiting for approval when a.Wave is
// "") and sends the vote. Checking here, not only in the workflow's validator, keeps a refused
// vote from costing an Update and gives the user the reason at once.
func (h *Handler) vote(ctx context.Context, st rollout.Status, a Action) string {
	wave, err := h.checkVote(st, a)
	a.Wave = wave
	if err != nil {
		h.refused(a, err)
		return fmt.Sprintf("You cannot %s %s: %v.", a.Verb, a.Rollout, err)
	}
	return h.do(ctx, a)
}

// checkVote returns the wave a vote is for, or why it must be refused: no such wave, no
// open approval request, or a user who is not eligible or has voted already.
func (h *Handler) checkVote(st rollout.Status, a Action) (string, error) {
	wave := a.Wave
	if wave == "" {
		for _, w := range st.Waves {
			if w.State == rollout.StateApproval && w.Approval != nil && w.Approval.Outcome == "" {
				wave = w.Name
				break
			}
		}
		if wave == "" {
			return "", errors.New("no wave is waiting for approval")
		}
	}
	w := findWave(st, wave)
	switch {
	case w == nil:
		return wave, fmt.Errorf("the rollout has no wave %s", wave)
	case w.Approval == nil:
		return wave, fmt.Errorf("wave %s has no approval request", wave)
	}
	// CheckVote covers Open(now) and Eligible, and also a second vote, with the rollout
	// package's own wording.
	return wave, w.Approval.CheckVote(wave, a.User, h.now())
}

// control checks that a.User is an operator of the rollout and sends the control.
func (h *Handler) control(ctx context.Context, st rollout.Status, a Action) string {
	if !h.isOperator(ctx, st, a.User) {
		err := fmt.Errorf("%s is not an operator (operators: %s)", a.User, strings.Join(st.Operators, ", "))
		if len(st.Operators) == 0 {
			err = errors.New("the rollout has no operators")
		}
		h.refused(a, err)
		return fmt.Sprintf("You cannot %s %s: %v.", a.Verb, a.Rollout, err)
	}
	return h.do(ctx, a)
}

// isOperator reports whether user is one of the rollout's operators, directly or through an
// "@group". A group that cannot be resolved counts as not containing the user: failing
// closed is the only safe answer for a break-glass control.
func (h *Handler) isOperator(ctx context.Context, st rollout.Status, user string) bool {
	if user == "" {
		return false
	}
	// Direct entries first, so a listed operator costs no group lookup. An "@group" entry is
	// never compared with the user ID itself.
	for _, op := range st.Operators {
		if !strings.HasPrefix(op, "@") && op == user {
			return true
		}
	}
	for _, op := range st.Operators {
		handle, ok := strings.CutPrefix(op, "@")
		if !ok || h.Groups == nil {
			continue
		}
		members, err := h.Groups.Members(ctx, handle)
		if err != nil {
			h.log().Warn("slack group lookup failed", "rollout", st.Rollout, "user", user,
				"reason", fmt.Sprintf("resolve @%s: %v", handle, err))
			continue
		}
		if slices.Contains(members, user) {
			return true
		}
	}
	return false
}

// do sends an action the user has the right to and returns the rollout's answer, or why it
// refused (the workflow validator's reason).
func (h *Handler) do(ctx context.Context, a Action) string {
	out, err := h.Rollouts.Do(ctx, a)
	if err != nil {
		h.log().Warn("slack action failed", "rollout", a.Rollout, "wave", a.Wave, "user", a.User, "action", a.Verb, "reason", err.Error())
		h.count(EventActionFailed)
		if ctx.Err() != nil {
			return timeoutText(a.Rollout)
		}
		return fmt.Sprintf("%s of %s failed: %v", a.Verb, a.Rollout, err)
	}
	h.log().Info("slack action", "rollout", a.Rollout, "wave", a.Wave, "user", a.User, "action", a.Verb)
	h.count(EventActionAccepted)
	if out == "" {
		out = fmt.Sprintf("%s of %s accepted.", a.Verb, a.Rollout)
	}
	return out
}

// callFailed is the answer when the rollout's status could not be read. Nothing was sent
// then, so unlike a Do that timed out there is no doubt to report.
func (h *Handler) callFailed(ctx context.Context, id string, err error) string {
	if ctx.Err() != nil {
		return fmt.Sprintf("fleetwave got no answer from Temporal in time about %s; nothing was done. Try again.", id)
	}
	return fmt.Sprintf("Cannot read rollout %s: %v", id, err)
}

// timeoutText tells the user that an action may or may not have happened: Temporal may have
// accepted the Update after we stopped waiting.
func timeoutText(id string) string {
	return fmt.Sprintf("fleetwave got no answer from Temporal in time. `/fleetwave status %s` shows whether it took effect.", id)
}

// refused logs an action refused for lack of rights, for the audit trail.
func (h *Handler) refused(a Action, why error) {
	h.log().Warn("slack action refused", "rollout", a.Rollout, "wave", a.Wave, "user", a.User, "action", a.Verb, "reason", why.Error())
	h.count(EventActionRefused)
}

// Interactions handles the Approve and Reject buttons. Slack wants the request answered in
// 3 s, so it is answered at once and the vote's outcome follows through the payload's
// response_url, as an ephemeral message to the user who pressed.
func (h *Handler) Interactions(w http.ResponseWriter, r *http.Request) {
	form, ok := h.verifiedForm(w, r)
	if !ok {
		return
	}
	raw := form.Get("payload")
	if raw == "" {
		h.badRequest(w, "missing payload")
		return
	}
	var p slack.InteractionCallback
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		h.badRequest(w, "malformed payload")
		return
	}
	// Other interactions (and other apps' buttons in a shared request URL) are not ours.
	if p.Type != slack.InteractionTypeBlockActions || len(p.ActionCallback.BlockActions) != 1 {
		w.WriteHeader(http.StatusOK)
		return
	}
	pressed := p.ActionCallback.BlockActions[0]
	var verb string
	switch pressed.ActionID {
	case ActionApprove:
		verb = VerbApprove
	case ActionReject:
		verb = VerbReject
	default:
		w.WriteHeader(http.StatusOK)
		return
	}
	rolloutID, wave, err := parseButtonValue(pressed.Value)
	if err != nil {
		h.badRequest(w, "malformed button value")
		return
	}
	if p.User.ID == "" {
		h.badRequest(w, "missing user")
		return
	}
	if !validResponseURL(p.ResponseURL) {
		h.badRequest(w, "missing or malformed response_url")
		return
	}
	w.WriteHeader(http.StatusOK)

	a := Action{Verb: verb, Rollout: rolloutID, Wave: wave, User: p.User.ID}
	// The work outlives the request: keep its values but not its cancellation.
	ctx := context.WithoutCancel(r.Context())
	h.pending.Add(1)
	go func() {
		defer h.pending.Done()
		h.press(ctx, a, p.ResponseURL)
	}()
}

// press votes for a button press and posts the answer to responseURL.
func (h *Handler) press(ctx context.Context, a Action, responseURL string) {
	ctx, cancel := context.WithTimeout(ctx, interactionTimeout)
	defer cancel()
	var text string
	if st, err := h.Rollouts.Status(ctx, a.Rollout); err != nil {
		text = h.callFailed(ctx, a.Rollout, err)
	} else {
		text = h.vote(ctx, st, a)
	}
	if err := h.respond(ctx, responseURL, text); err != nil {
		h.log().Warn("slack response failed", "rollout", a.Rollout, "wave", a.Wave, "user", a.User, "action", a.Verb, "reason", err.Error())
	}
}

// respond posts an ephemeral answer to a response_url. The URL is a capability (anyone
// holding it may post in the channel), so errors are stripped of it before they are logged.
func (h *Handler) respond(ctx context.Context, responseURL, text string) error {
	body, err := json.Marshal(responseURLReply{ResponseType: slack.ResponseTypeEphemeral, Text: esc(text)})
	if err != nil {
		return fmt.Errorf("encode the answer: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, responseURL, bytes.NewReader(body))
	if err != nil {
		return errors.New("build the response_url request")
	}
	req.Header.Set("Content-Type", "application/json")
	client := h.HTTP
	if client == nil {
		client = defaultResponseClient
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post to response_url: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post to response_url: %s", resp.Status)
	}
	return nil
}

// validResponseURL reports whether s is an absolute http(s) URL we can post to.
func validResponseURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != ""
}

// wait blocks until every button press has been answered; tests use it.
func (h *Handler) wait() { h.pending.Wait() }

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

// findWave returns the named wave of st, or nil.
func findWave(st rollout.Status, name string) *rollout.WaveStatus {
	for i := range st.Waves {
		if st.Waves[i].Name == name {
			return &st.Waves[i]
		}
	}
	return nil
}

// nextField splits off the first whitespace-separated word of s and returns it and the rest,
// trimmed; comments keep their inner spacing.
func nextField(s string) (field, rest string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimSpace(s[i:])
}
