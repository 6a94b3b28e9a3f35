package rollout

// Event is one thing a rollout reports to its Slack thread (and, later, other notifiers).
type Event struct {
	Kind string
	// Wave names the wave the event is about; "" for rollout events.
	Wave string `json:",omitempty"`
}

// Event kinds. The thread's header is updated on each; all but EventStarted add a reply.
const (
	EventStarted           = "started"            // the thread's header is posted
	EventWaveStarted       = "wave-started"       // a wave is being promoted
	EventWaveFinished      = "wave-finished"      // a wave ended, healthy or not
	EventApprovalRequested = "approval-requested" // a wave waits for approval: buttons
	EventApprovalDecided   = "approval-decided"   // the request's buttons give way to the decision
	EventApprovalReminder  = "approval-reminder"  // an open request expires soon (remindBefore)
	EventReverted          = "reverted"           // sites degraded and were reverted through git
	EventFinished          = "finished"           // the rollout ended
	EventCancelled         = "cancelled"          // the rollout's workflow was cancelled in Temporal
)

// Digest is the status with only what a notification shows: every site's name and verdict,
// and the messages and checks of sites that degraded, were reverted or are unknown. It keeps
// notification payloads (and so the workflow history) small on large fleets.
func (st Status) Digest() Status {
	out := st
	out.Waves = make([]WaveStatus, len(st.Waves))
	for i, w := range st.Waves {
		w.Sites = make([]SiteStatus, len(st.Waves[i].Sites))
		for j, s := range st.Waves[i].Sites {
			switch s.Verdict {
			case VerdictDegraded, VerdictReverted, VerdictUnknown:
				w.Sites[j] = SiteStatus{Name: s.Name, Verdict: s.Verdict, Revert: s.Revert, Message: s.Message, Checks: s.Checks}
			default:
				w.Sites[j] = SiteStatus{Name: s.Name, Verdict: s.Verdict}
			}
		}
		out.Waves[i] = w
	}
	out.Controls, out.Waiting = nil, nil
	return out
}
