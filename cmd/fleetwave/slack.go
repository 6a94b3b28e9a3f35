package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/fleetwave/fleetwave/activities"
	"github.com/fleetwave/fleetwave/chatops"
	"github.com/fleetwave/fleetwave/internal/report"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/workflows"
)

// Slack settings come from the environment, so tokens stay out of flags and process lists.
const (
	envSlackToken  = "FLEETWAVE_SLACK_TOKEN"
	envSlackSecret = "FLEETWAVE_SLACK_SIGNING_SECRET"
	envSlackAPI    = "FLEETWAVE_SLACK_API_URL"
	envTemporalUI  = "FLEETWAVE_TEMPORAL_UI_URL"
	// envPublicURL is the address people reach this server at (its ingress), for the report
	// links of Slack threads.
	envPublicURL = "FLEETWAVE_PUBLIC_URL"
	// envReportLinkTTL is how long a report link posted in Slack lasts.
	envReportLinkTTL = "FLEETWAVE_REPORT_LINK_TTL"
)

// defaultReportLinkTTL keeps a report link readable for a quarter: long enough for a change
// review, short enough that a link copied out of Slack does not last for good.
const defaultReportLinkTTL = 90 * 24 * time.Hour

// reportLinkTTL reads FLEETWAVE_REPORT_LINK_TTL (a duration such as 720h; 90 days if unset).
func reportLinkTTL() (time.Duration, error) {
	v := os.Getenv(envReportLinkTTL)
	if v == "" {
		return defaultReportLinkTTL, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: %q is not a positive duration: use a number with a unit, like 720h", envReportLinkTTL, v)
	}
	return d, nil
}

// setupSlack wires Slack into the node: the activities that post threads and resolve groups,
// and the handlers of /slack/commands and /slack/interactions. Without a token outbound
// messages are skipped; without a signing secret every inbound request is refused. It also
// sets what reports name and link to (the namespace, the Temporal UI, FLEETWAVE_COMMIT_URL) and
// the key of report links: keepEvidence and the report pages use them.
func (n *node) setupSlack(log *slog.Logger, ui, namespace string) {
	token, secret := os.Getenv(envSlackToken), os.Getenv(envSlackSecret)
	api := chatops.NewAPI(token, os.Getenv(envSlackAPI))
	switch {
	case token == "" && secret == "":
		log.Info("Slack is off: set " + envSlackToken + " and " + envSlackSecret + " to post rollout threads and take approvals from Slack")
	case token == "":
		log.Info(envSlackToken + " is not set: Slack commands and buttons work, outbound Slack messages are skipped")
	case secret == "":
		log.Warn(envSlackSecret + " is not set: rollout threads are posted, but every Slack command and button press is refused")
	}
	groups := chatops.Directory{API: api}
	n.namespace = namespace
	n.reportKey = report.LinkKey(secret)
	n.reportLinks = report.Links{UI: ui, Commit: os.Getenv(envCommitURL)}
	links := chatops.Links{UI: ui, Namespace: namespace}
	if n.publicURL != "" && len(n.reportKey) > 0 {
		links.Report = func(id string) string {
			return report.PageURL(n.publicURL, n.reportKey, id, time.Now().Add(n.reportTTL).Truncate(time.Second))
		}
	}
	n.slack = &activities.Slack{
		Notifier: &chatops.Notifier{API: api, Links: links, Log: log},
		Groups:   groups,
	}
	n.voteKey = workflows.VoteKey(secret)
	n.slackHandler = &chatops.Handler{SigningSecret: secret, Rollouts: slackRollouts{fw: n.fw, fleet: n.fleet, voteKey: n.voteKey}, Groups: groups, Log: log,
		Count: func(event string) { n.metrics.SlackEvents.WithLabelValues(event).Inc() }}
	if u, err := url.Parse(os.Getenv(envSlackAPI)); err == nil && u.Host != "" {
		// Another Slack-compatible API (a test server, an enterprise proxy): its answers
		// come back through its own host.
		n.slackHandler.ResponseHosts = []string{u.Scheme + "://" + u.Hostname()}
	}
}

// slackRollouts gives the Slack handlers this node's fleet's rollouts, through the same client
// updates as the CLI.
type slackRollouts struct {
	fw    *workflows.Client
	fleet string
	// voteKey signs the votes this server verified (workflows.SignVote).
	voteKey []byte
}

// id accepts a rollout ID of this fleet, or a commit (short or full) of it.
func (s slackRollouts) id(ctx context.Context, ref string) (string, error) {
	if !strings.Contains(ref, "/") {
		return s.fw.Resolve(ctx, s.fleet, ref)
	}
	if !strings.HasPrefix(ref, "rollout/"+s.fleet+"/") {
		return "", fmt.Errorf("%q is not a rollout of fleet %s", ref, s.fleet)
	}
	return ref, nil
}

func (s slackRollouts) Status(ctx context.Context, ref string) (rollout.Status, error) {
	id, err := s.id(ctx, ref)
	if err != nil {
		return rollout.Status{}, err
	}
	return s.fw.Status(ctx, id)
}

func (s slackRollouts) Active(ctx context.Context) ([]chatops.Active, error) {
	list, err := s.fw.List(ctx, workflows.ListFilter{Fleet: s.fleet, Running: true, Limit: 20})
	if err != nil {
		return nil, err
	}
	out := make([]chatops.Active, len(list))
	for i, r := range list {
		out[i] = chatops.Active{Rollout: r.Rollout, Fleet: r.Fleet, Commit: r.Commit, Wave: r.Wave, State: r.State}
	}
	return out, nil
}

// waitingWave is the wave a vote is on: the one named, or the one the rollout would take
// (rollout.Status.ApprovalWave), read now. The signed vote names it, so that its proof cannot count on a wave asked
// later.
func (s slackRollouts) waitingWave(ctx context.Context, id, wave string) (string, error) {
	if wave != "" {
		return wave, nil
	}
	st, err := s.fw.Status(ctx, id)
	if err != nil {
		return "", err
	}
	if i, ok := st.ApprovalWave(); ok {
		return st.Waves[i].Name, nil
	}
	return "", fmt.Errorf("no wave of rollout %s is waiting for approval", id)
}

func (s slackRollouts) Do(ctx context.Context, a chatops.Action) (string, error) {
	id, err := s.id(ctx, a.Rollout)
	if err != nil {
		return "", err
	}
	switch a.Verb {
	case chatops.VerbApprove, chatops.VerbReject:
		wave, err := s.waitingWave(ctx, id, a.Wave)
		if err != nil {
			return "", err
		}
		vote := workflows.SignVote(s.voteKey, id, a.Verb, workflows.VoteInput{Wave: wave, By: a.User, Comment: a.Comment})
		res, err := s.fw.Vote(ctx, id, a.Verb, vote)
		return res.Message, err
	case chatops.VerbPause, chatops.VerbResume, chatops.VerbAbort, chatops.VerbRollback:
		res, err := s.fw.Control(ctx, id, a.Verb, workflows.ControlInput{By: a.User, Reason: a.Comment})
		return res.Message, err
	}
	return "", fmt.Errorf("unknown action %q", a.Verb)
}
