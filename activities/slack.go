package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fleetwave/fleetwave/chatops"
)

// Slack runs the activities that talk to Slack: posting a rollout's thread and resolving the
// user groups among a wave's approvers. Neither ever fails a rollout: the workflow runs them
// aside and carries on when Slack is down.
type Slack struct {
	// Notifier posts messages; with a nil API every message is skipped.
	Notifier *chatops.Notifier
	// Groups resolves "@group" approvers; nil means they cannot be resolved.
	Groups chatops.Groups
}

// NotifyInput is one message of a rollout thread.
type NotifyInput struct {
	Message chatops.Message
}

// NotifyResult says where the message went; Skipped is true when outbound Slack is off.
type NotifyResult struct {
	Sent    chatops.Sent
	Skipped bool `json:",omitempty"`
}

// Notify posts one event of a rollout to its Slack thread.
func (s *Slack) Notify(ctx context.Context, in NotifyInput) (NotifyResult, error) {
	// Without a token (serve and dev said so once when they started) the thread is skipped.
	if s == nil || s.Notifier == nil || s.Notifier.API == nil {
		return NotifyResult{Skipped: true}, nil
	}
	sent, err := s.Notifier.Send(ctx, in.Message)
	if err != nil {
		return NotifyResult{}, err
	}
	return NotifyResult{Sent: sent}, nil
}

// ResolveInput lists user group handles (without "@").
type ResolveInput struct {
	Groups []string
}

// ResolveResult is the union of the groups' members, sorted, and for every group that could
// not be resolved, why.
type ResolveResult struct {
	Members    []string
	Unresolved []string `json:",omitempty"`
}

// ResolveGroups resolves user groups to their members. A group that cannot be resolved is
// reported, not an error: its members simply cannot vote, which fails closed.
func (s *Slack) ResolveGroups(ctx context.Context, in ResolveInput) (ResolveResult, error) {
	var out ResolveResult
	for _, g := range in.Groups {
		if s == nil || s.Groups == nil {
			out.Unresolved = append(out.Unresolved, fmt.Sprintf("@%s: %v", g, chatops.ErrNoSlack))
			continue
		}
		members, err := s.Groups.Members(ctx, g)
		switch {
		case errors.Is(err, chatops.ErrNoSlack):
			out.Unresolved = append(out.Unresolved, fmt.Sprintf("@%s: %v", g, err))
		case err != nil && ctx.Err() == nil:
			out.Unresolved = append(out.Unresolved, fmt.Sprintf("@%s could not be resolved: %v", g, err))
		case err != nil:
			return out, err
		}
		out.Members = append(out.Members, members...)
	}
	slices.Sort(out.Members)
	out.Members = slices.Compact(out.Members)
	return out, nil
}
