package chatops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/slack-go/slack"
)

// interactionTimeout bounds the work behind a button press, which runs after the request
// was answered.
const interactionTimeout = 30 * time.Second

// defaultResponseClient posts to response_url when Handler.HTTP is nil; the timeout keeps a
// slow Slack from piling up goroutines.
var defaultResponseClient = &http.Client{Timeout: 10 * time.Second}

// responseURLReply is an answer posted to a response_url. ReplaceOriginal is always sent as
// false so the approval request (and its buttons) stays for the other approvers.
type responseURLReply struct {
	ResponseType    string `json:"response_type"`
	ReplaceOriginal bool   `json:"replace_original"`
	Text            string `json:"text"`
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
	if !h.slackResponseURL(p.ResponseURL) {
		h.badRequest(w, "response_url does not point to Slack")
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

// SlackResponseHosts are the hosts of Slack's response URLs.
var SlackResponseHosts = []string{"https://hooks.slack.com", "https://hooks.slack-gov.com"}

// slackResponseURL reports whether s points to one of the handler's ResponseHosts.
func (h *Handler) slackResponseURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	hosts := h.ResponseHosts
	if hosts == nil {
		hosts = SlackResponseHosts
	}
	return slices.Contains(hosts, u.Scheme+"://"+u.Hostname())
}

// wait blocks until every button press has been answered; tests use it.
func (h *Handler) wait() { h.pending.Wait() }
