package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fleetwave/fleetwave/chatops"
	"github.com/fleetwave/fleetwave/rollout"
)

// Slack runs the activities that talk to Slack: posting a rollout's thread and resolving the
// user groups among a wave's approvers. Neither ever fails a rollout: the workflow runs them
// aside and carries on when Slack is down.
type Slack struct {
	// Notifier posts messages; with a nil API every message is skipped.
	Notifier *chatops.Notifier
	// Groups resolves "@group" approvers; nil means they cannot be resolved.
	Groups GroupDirectory
}

// GroupDirectory looks up Slack user groups by handle (chatops.Directory).
type GroupDirectory interface {
	Lookup(ctx context.Context, handle string) (chatops.Group, error)
}

// NotifyInput is one event of a rollout for its Slack thread.
type NotifyInput struct {
	// Channel is the plan's channel, or the channel ID Slack returned for the thread.
	Channel string
	// Thread is the thread's header timestamp; "" before the header is posted.
	Thread string
	// Update is the message the event rewrites (an approval request once decided), or "".
	Update string
	Event  rollout.Event
	Status rollout.Status
}

// NotifyResult says where the message went: the channel ID, the thread and the message's
// timestamp. Skipped is true when outbound Slack is off (no token).
type NotifyResult struct {
	Channel, Thread, TS string
	Skipped             bool `json:",omitempty"`
}

// Notify posts one event of a rollout to its Slack thread.
func (s *Slack) Notify(ctx context.Context, in NotifyInput) (NotifyResult, error) {
	// Without a token (serve and dev said so once when they started) the thread is skipped.
	if s == nil || s.Notifier == nil || s.Notifier.API == nil {
		return NotifyResult{Skipped: true}, nil
	}
	sent, err := s.Notifier.Send(ctx, chatops.Message{Channel: in.Channel, Thread: in.Thread, Update: in.Update, Event: in.Event, Status: in.Status})
	if err != nil {
		return NotifyResult{}, err
	}
	return NotifyResult{Channel: sent.Channel, Thread: sent.Thread, TS: sent.TS}, nil
}

// ResolveInput lists user group handles (without "@").
type ResolveInput struct {
	Groups []string
}

// ResolveResult is the union of the groups' members, sorted, and for every group that could
// not be resolved, why. IDs maps each resolved handle to the group's ID, for mentions.
type ResolveResult struct {
	Members    []string
	Unresolved []string          `json:",omitempty"`
	IDs        map[string]string `json:",omitempty"`
}

// ResolveGroups resolves user groups to their members. A group that does not exist, or cannot
// be resolved because there is no token, is reported, not an error: its members simply cannot
// vote, which fails closed. Any other failure (Slack down, rate limited) is returned, so the
// activity is retried.
func (s *Slack) ResolveGroups(ctx context.Context, in ResolveInput) (ResolveResult, error) {
	var out ResolveResult
	for _, g := range in.Groups {
		if s == nil || s.Groups == nil {
			out.Unresolved = append(out.Unresolved, fmt.Sprintf("@%s: %v", g, chatops.ErrNoSlack))
			continue
		}
		group, err := s.Groups.Lookup(ctx, g)
		switch {
		case errors.Is(err, chatops.ErrNoSlack):
			out.Unresolved = append(out.Unresolved, fmt.Sprintf("@%s: %v", g, err))
		case errors.Is(err, chatops.ErrNoGroup):
			out.Unresolved = append(out.Unresolved, err.Error())
		case err != nil:
			return ResolveResult{}, fmt.Errorf("resolve @%s: %w", g, err)
		}
		if err == nil {
			if out.IDs == nil {
				out.IDs = map[string]string{}
			}
			out.IDs[g] = group.ID
		}
		out.Members = append(out.Members, group.Members...)
	}
	slices.Sort(out.Members)
	out.Members = slices.Compact(out.Members)
	return out, nil
}
