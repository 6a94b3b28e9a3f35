package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fleetwave/fleetwave/chatops"
)

type fakeGroups map[string][]string

func (f fakeGroups) Lookup(_ context.Context, handle string) (chatops.Group, error) {
	if handle == "down" {
		return chatops.Group{}, errors.New("slack: ratelimited")
	}
	m, ok := f[handle]
	if !ok {
		return chatops.Group{}, fmt.Errorf("@%s: %w", handle, chatops.ErrNoGroup)
	}
	return chatops.Group{ID: "S0" + strings.ToUpper(handle), Members: m}, nil
}

func TestResolveGroupsFailsClosed(t *testing.T) {
	s := &Slack{Groups: fakeGroups{"leads": {"U0B", "U0A"}, "oncall": {"U0A", "U0C"}}}
	got, err := s.ResolveGroups(context.Background(), ResolveInput{Groups: []string{"leads", "oncall", "ghosts"}})
	if err != nil {
		t.Fatal(err)
	}
	want := ResolveResult{Members: []string{"U0A", "U0B", "U0C"}, Unresolved: []string{"@ghosts: no such Slack user group"},
		IDs: map[string]string{"leads": "S0LEADS", "oncall": "S0ONCALL"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ResolveGroups (-want +got):\n%s", diff)
	}
	// A Slack failure is an error, so Temporal retries the activity.
	if _, err := s.ResolveGroups(context.Background(), ResolveInput{Groups: []string{"leads", "down"}}); err == nil || err.Error() != "resolve @down: slack: ratelimited" {
		t.Errorf("Slack down: %v", err)
	}
	// Without Slack, groups add nobody and say why.
	got, err = (&Slack{}).ResolveGroups(context.Background(), ResolveInput{Groups: []string{"leads"}})
	if err != nil || len(got.Members) != 0 || got.Unresolved[0] != "@leads: "+chatops.ErrNoSlack.Error() {
		t.Errorf("no Slack: %+v %v", got, err)
	}
}

func TestNotifyWithoutTokenIsSkipped(t *testing.T) {
	res, err := (&Slack{Notifier: &chatops.Notifier{}}).Notify(context.Background(), NotifyInput{Channel: "#deploys"})
	if err != nil || !res.Skipped {
		t.Errorf("Notify without a token: %+v %v, want skipped", res, err)
	}
}
