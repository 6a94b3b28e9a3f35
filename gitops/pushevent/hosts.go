package pushevent

import (
	"cmp"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// ErrNotPush means the request is a valid, authenticated event that is not a push (a ping,
// a pull request, a tag push hook): intake answers it without starting anything.
var ErrNotPush = errors.New("not a push event")

// Hosts fleetwave takes push events from.
const (
	HostGitHub  = "github"
	HostGitLab  = "gitlab"
	HostGitea   = "gitea"
	HostGeneric = "generic"
)

// Parse authenticates and decodes a push event from GitHub, GitLab, Gitea, Forgejo or the
// generic format, recognised by their headers. The secret is the webhook secret configured for
// the repository (the GitLab token); an empty secret refuses everything.
//
// Authentication comes first: an unsigned or wrongly signed request is ErrSignature whatever
// its body. A valid event that is not a push is ErrNotPush; a malformed body is ErrPayload.
func Parse(h http.Header, body, secret []byte) (Event, error) {
	switch {
	case h.Get("X-GitHub-Event") != "":
		if err := VerifySignature(body, h.Get("X-Hub-Signature-256"), secret); err != nil {
			return Event{}, err
		}
		return parseHostPush(HostGitHub, h.Get("X-GitHub-Event"), "push", h.Get("X-GitHub-Delivery"), body)
	case h.Get("X-Gitlab-Event") != "":
		if len(secret) == 0 {
			return Event{}, fmt.Errorf("%w: no webhook secret configured", ErrSignature)
		}
		if subtle.ConstantTimeCompare([]byte(h.Get("X-Gitlab-Token")), secret) != 1 {
			return Event{}, fmt.Errorf("%w: X-Gitlab-Token does not match", ErrSignature)
		}
		return parseHostPush(HostGitLab, h.Get("X-Gitlab-Event"), "Push Hook", h.Get("X-Gitlab-Event-UUID"), body)
	case h.Get("X-Gitea-Event") != "" || h.Get("X-Forgejo-Event") != "":
		sig := h.Get("X-Gitea-Signature")
		if f := h.Get("X-Forgejo-Signature"); f != "" {
			sig = f
		}
		// Gitea and Forgejo send the bare hex digest.
		if err := VerifySignature(body, "sha256="+sig, secret); err != nil {
			return Event{}, err
		}
		event := h.Get("X-Gitea-Event")
		if event == "" {
			event = h.Get("X-Forgejo-Event")
		}
		return parseHostPush(HostGitea, event, "push", h.Get("X-Gitea-Delivery"), body)
	}
	if err := VerifySignature(body, h.Get(SignatureHeader), secret); err != nil {
		return Event{}, err
	}
	e, err := ParseGeneric(body)
	e.Host = HostGeneric
	return e, err
}

// hostPayload is the part of GitHub, GitLab and Gitea push payloads fleetwave reads; the
// three agree on ref, before and after.
type hostPayload struct {
	ObjectKind string `json:"object_kind"`
	Ref        string `json:"ref"`
	Before     string `json:"before"`
	After      string `json:"after"`
	Repository struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
	Project struct {
		PathWithNamespace string `json:"path_with_namespace"`
	} `json:"project"`
	// Who pushed: GitHub and Gitea send the sender's login, Gitea the pusher's too, GitLab
	// user_username.
	Sender struct {
		Login string `json:"login"`
	} `json:"sender"`
	Pusher struct {
		Login string `json:"login"`
		Name  string `json:"name"`
	} `json:"pusher"`
	UserUsername string `json:"user_username"`
}

func parseHostPush(host, event, pushEvent, delivery string, body []byte) (Event, error) {
	if event != pushEvent {
		return Event{Host: host, Delivery: delivery}, fmt.Errorf("%w: %s event %q", ErrNotPush, host, event)
	}
	var p hostPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return Event{}, fmt.Errorf("%w: %s push: %v", ErrPayload, host, err)
	}
	e := Event{Host: host, Delivery: delivery, Ref: p.Ref, Before: p.Before, After: p.After, Repository: p.Repository.FullName,
		Pusher: cmp.Or(p.Sender.Login, p.Pusher.Login, p.UserUsername, p.Pusher.Name)}
	if host == HostGitLab {
		e.Repository = p.Project.PathWithNamespace
	}
	switch {
	case e.Ref == "":
		return Event{}, fmt.Errorf("%w: %s push without ref", ErrPayload, host)
	case !shaRE.MatchString(e.After):
		return Event{}, fmt.Errorf("%w: %s push: after must be a 40-character commit hash, got %q", ErrPayload, host, e.After)
	}
	return e, nil
}
