package chatops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/slack-go/slack"

	"github.com/fleetwave/fleetwave/rollout"
)

// ErrNoGroup means the workspace has no user group with the handle.
var ErrNoGroup = errors.New("no such Slack user group")

// ErrNoSlack means outbound Slack is not configured (no bot token): messages are skipped.
var ErrNoSlack = errors.New("no Slack bot token: outbound Slack messages are skipped")

// Notifier posts a rollout's thread. A nil API skips every message.
type Notifier struct {
	API   *slack.Client
	Links Links
	Log   *slog.Logger
}

// NewAPI returns a Slack Web API client for the bot token, or nil when token is "". apiURL ""
// means Slack itself; otherwise it is a Slack-compatible API base ("http://127.0.0.1:8080/api/").
func NewAPI(token, apiURL string) *slack.Client {
	if token == "" {
		return nil
	}
	var opts []slack.Option
	if apiURL != "" {
		if !strings.HasSuffix(apiURL, "/") {
			apiURL += "/"
		}
		opts = append(opts, slack.OptionAPIURL(apiURL))
	}
	return slack.New(token, opts...)
}

// Message addresses one post of a rollout thread.
type Message struct {
	// Channel is the plan's channel (a name or an ID); after the first post, the ID Slack
	// returned.
	Channel string
	// Thread is the header's timestamp; "" before the header is posted.
	Thread string
	// Update is the timestamp of the message an event rewrites (the approval request an
	// rollout.EventApprovalDecided replaces); "" to post a new reply.
	Update string
	Event  rollout.Event
	Status rollout.Status
}

// Sent says where a message went: the channel ID, the thread, and the message's timestamp.
type Sent struct {
	Channel, Thread, TS string
}

// Send posts the event: the header first when the thread has none, then the reply (or the
// update of an earlier message), then the header updated to the current status. Only a failure
// of the event's own post is returned, so a retry never posts anything twice: a reply that
// fails right after this call opened the thread is logged and dropped, and a header that
// could not be updated is logged and fixed by the next event.
func (n *Notifier) Send(ctx context.Context, m Message) (Sent, error) {
	if n.API == nil {
		return Sent{}, ErrNoSlack
	}
	out := Sent{Channel: m.Channel, Thread: m.Thread}
	header := HeaderBlocks(m.Status, n.Links)
	headerText := fmt.Sprintf("Rollout of %s to fleet %s: %s", rollout.Short(m.Status.Commit), m.Status.Fleet, m.Status.State)
	if out.Thread == "" {
		ch, ts, err := n.API.PostMessageContext(ctx, m.Channel, slack.MsgOptionBlocks(header...), slack.MsgOptionText(headerText, false))
		if err != nil {
			return out, fmt.Errorf("post the rollout header to %s: %w", m.Channel, err)
		}
		out.Channel, out.Thread, out.TS = ch, ts, ts
		if m.Event.Kind == rollout.EventStarted {
			return out, nil
		}
	}
	var blocks []slack.Block
	var text string
	switch m.Event.Kind {
	case rollout.EventStarted:
		blocks = nil
	case rollout.EventApprovalRequested, rollout.EventApprovalDecided:
		blocks, text = ApprovalBlocks(m.Status, m.Event.Wave)
	default:
		blocks, text = EventBlocks(m.Event, m.Status, n.Links)
	}
	if blocks != nil {
		if m.Update != "" {
			if _, _, _, err := n.API.UpdateMessageContext(ctx, out.Channel, m.Update, slack.MsgOptionBlocks(blocks...), slack.MsgOptionText(text, false)); err != nil {
				return out, fmt.Errorf("update message %s in %s: %w", m.Update, out.Channel, err)
			}
			out.TS = m.Update
		} else {
			_, ts, err := n.API.PostMessageContext(ctx, out.Channel, slack.MsgOptionBlocks(blocks...), slack.MsgOptionText(text, false), slack.MsgOptionTS(out.Thread))
			switch {
			case err != nil && m.Thread == "":
				// The header was posted by this call: a retry would open a second thread, so
				// the thread goes on without this reply.
				n.log().Warn("cannot post to the new rollout thread in Slack", "rollout", m.Status.Rollout, "error", err)
				return out, nil
			case err != nil:
				return out, fmt.Errorf("post %s to the thread in %s: %w", m.Event.Kind, out.Channel, err)
			}
			out.TS = ts
		}
	}
	if m.Thread != "" {
		if _, _, _, err := n.API.UpdateMessageContext(ctx, out.Channel, out.Thread, slack.MsgOptionBlocks(header...), slack.MsgOptionText(headerText, false)); err != nil {
			n.log().Warn("cannot update the rollout header in Slack", "rollout", m.Status.Rollout, "error", err)
		}
	}
	return out, nil
}

func (n *Notifier) log() *slog.Logger {
	if n.Log != nil {
		return n.Log
	}
	return slog.Default()
}

// Directory resolves user groups through the Slack API (usergroups.list with users).
type Directory struct {
	API *slack.Client
}

// Group is a Slack user group: its ID (for mentions) and its members' user IDs.
type Group struct {
	ID      string
	Members []string
}

// Lookup returns the user group with the handle (without "@").
func (d Directory) Lookup(ctx context.Context, handle string) (Group, error) {
	if d.API == nil {
		return Group{}, ErrNoSlack
	}
	groups, err := d.API.GetUserGroupsContext(ctx, slack.GetUserGroupsOptionIncludeUsers(true))
	if err != nil {
		return Group{}, fmt.Errorf("list Slack user groups: %w", err)
	}
	for _, g := range groups {
		if g.Handle == handle {
			return Group{ID: g.ID, Members: g.Users}, nil
		}
	}
	return Group{}, fmt.Errorf("@%s: %w", handle, ErrNoGroup)
}

// Members returns the user IDs in the group with the handle (without "@").
func (d Directory) Members(ctx context.Context, handle string) ([]string, error) {
	g, err := d.Lookup(ctx, handle)
	return g.Members, err
}
