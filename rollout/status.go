package rollout

import (
	"fmt"
	"strings"
	"time"
)

// Verdict is what fleetwave concludes about one site.
type Verdict string

// Verdicts. Unknown never counts as healthy.
const (
	VerdictPending    Verdict = "Pending"    // not promoted yet
	VerdictConverging Verdict = "Converging" // promoted, not yet applied and ready
	VerdictHealthy    Verdict = "Healthy"    // applied our commit, ready, checks passing
	VerdictDegraded   Verdict = "Degraded"   // a check failed FailureThreshold times in a row, Flux failed, or Unknown too long
	VerdictUnknown    Verdict = "Unknown"    // cannot tell: the site is unreachable
	VerdictReverted   Verdict = "Reverted"   // the promotion was reverted through git
	// VerdictDeferred: the site was offline (health.offline, action defer) when its batch was
	// promoted, or after its promotion was pushed and before it applied it; its branch holds
	// no commit a gate did not pass (an unapplied promotion is withdrawn by a revert).
	VerdictDeferred Verdict = "Deferred"
)

// State is the phase of a rollout or a wave.
type State string

// States of a rollout and of its waves.
const (
	StatePending     State = "Pending"
	StateLoading     State = "Loading"
	StatePromoting   State = "Promoting"
	StateConverging  State = "Converging"
	StateBaking      State = "Baking"
	StateRollingBack State = "RollingBack"
	StatePaused      State = "Paused"           // held by an operator: no new batch or wave is promoted
	StateWaiting     State = "Waiting"          // a policy holds the next wave until a time (a freeze, business hours, a soak)
	StateApproval    State = "AwaitingApproval" // the next wave waits for its approvers
	StateSucceeded   State = "Succeeded"
	StateFailed      State = "Failed"
	StateAborted     State = "Aborted"    // stopped by an operator; promoted sites stay as they are
	StateRolledBack  State = "RolledBack" // stopped by an operator who had every promoted site reverted
	StateSuperseded  State = "Superseded" // stopped at a safe point for a newer commit

	// The workflow was closed from outside, so its own last state is stale: these are read
	// from Temporal (the execution's status), never set by the workflow.
	StateTerminated State = "Terminated" // `temporal workflow terminate`, or a reset
	StateTimedOut   State = "TimedOut"   // the workflow's execution or run timeout passed
	StateCancelled  State = "Cancelled"  // cancelled in Temporal
)

// Done reports whether a rollout in state s has ended.
func (s State) Done() bool {
	switch s {
	case StateSucceeded, StateFailed, StateAborted, StateRolledBack, StateSuperseded,
		StateTerminated, StateTimedOut, StateCancelled:
		return true
	}
	return false
}

// ClosedState is the state of a rollout whose workflow closed with Temporal's execution
// status (Terminated, TimedOut, Canceled) without setting its own final state; ok is false
// for every other status, where the workflow's own state stands.
func ClosedState(status string) (State, bool) {
	switch status {
	case "Terminated":
		return StateTerminated, true
	case "TimedOut":
		return StateTimedOut, true
	case "Canceled":
		return StateCancelled, true
	}
	return "", false
}

// StopCause is why a rollout stops before its end on purpose; StopNone while it does not.
type StopCause string

// Stop causes.
const (
	StopNone      StopCause = ""
	StopAbort     StopCause = "abort"     // an operator: promoted sites stay as they are
	StopRollback  StopCause = "rollback"  // an operator: every promoted site is reverted
	StopSupersede StopCause = "supersede" // a newer commit of the fleet goes next
	StopWatch     StopCause = "watch"     // the watch saw a site of a succeeded wave degrade
)

// Control is an operator's action on a running rollout.
type Control struct {
	Action string    `json:"action"`
	By     string    `json:"by,omitempty"`
	Reason string    `json:"reason,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// CheckResult is one measurement of one health check on one site.
type CheckResult struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Unknown is true when the check could not measure (Prometheus or the probe unreachable,
	// a timeout): the site is then Unknown, never Healthy.
	Unknown bool `json:"unknown,omitempty"`
	// Value is the measurement (a metric value, an HTTP status); Threshold says what was expected.
	Value     float64   `json:"value"`
	Threshold string    `json:"threshold,omitempty"`
	Message   string    `json:"message,omitempty"`
	At        time.Time `json:"at,omitzero"`
}

// String describes the measurement for status lines and revert reasons.
func (c CheckResult) String() string {
	out := "check " + c.Name + " failed"
	switch {
	case c.Unknown:
		out = "check " + c.Name + " could not measure"
	case c.OK:
		out = "check " + c.Name + " passed"
	}
	if c.Threshold != "" && !c.Unknown {
		out += fmt.Sprintf(" (value %g, want %s)", c.Value, c.Threshold)
	}
	if c.Message != "" {
		out += ": " + c.Message
	}
	if !c.At.IsZero() {
		out += " at " + c.At.UTC().Format(time.RFC3339)
	}
	return out
}

// Unknown returns why the observation cannot tell whether the site is healthy (the site or
// one of its checks could not be measured), or "".
func (s SiteState) Unknown() string {
	switch {
	case !s.Reachable:
		return "unreachable: " + s.Message
	case s.Suspended:
		return "flux kustomization suspended: it applies nothing until resumed (" + s.Message + ")"
	case s.Reconciling && !s.Ready && !s.Stalled:
		// Flux is at work (or its Ready condition is Unknown): no verdict yet. A periodic
		// reconcile passes in a round; a long stretch runs into unknownTimeout.
		return "flux reconciling: " + s.Message
	}
	for _, c := range s.Checks {
		if c.Unknown {
			return c.String()
		}
	}
	return ""
}

// SiteState is one observation of a site, as a site driver reports it.
type SiteState struct {
	Site string
	// Reachable is false when the site could not be asked; Message says why.
	Reachable bool
	// Revision is what Flux last applied, in Flux's format ("sites/ams-1@sha1:<hash>").
	Revision string `json:",omitempty"`
	// Contains is the commit the site should run when Revision is another commit of its
	// branch that holds its changes, by content: someone else pushed on top of the promotion
	// (elsewhere), and Flux applied their head, which runs the promotion too. A revert of the
	// promotion descends from it but does not hold it.
	Contains string `json:",omitempty"`
	// Attempted is what Flux last tried to apply; it runs ahead of Revision when that failed.
	Attempted   string `json:",omitempty"`
	Ready       bool
	Reconciling bool `json:",omitempty"`
	Stalled     bool `json:",omitempty"`
	// Suspended is true when the site's Kustomization is suspended: Flux applies nothing, so
	// whatever it shows says nothing about the rollout's commit.
	Suspended bool `json:",omitempty"`
	// SourceRefused is the commit the site's source (its GitRepository) refused to fetch, a
	// bare hash, with Message saying why: a signature that does not verify. Flux then keeps
	// applying the revision before it.
	SourceRefused string        `json:",omitempty"`
	Message       string        `json:",omitempty"`
	Checks        []CheckResult `json:",omitempty"`
	ObservedAt    time.Time
}

// Applied reports whether the site applied the commit with the given hash, or a later commit
// of its branch that contains it (Contains).
func (s SiteState) Applied(hash string) bool {
	return s.Reachable && hash != "" && (RevisionHash(s.Revision) == hash || s.Contains == hash)
}

// Converged reports whether the site applied the commit and Flux calls it ready: Ready and
// neither Stalled nor Reconciling, Flux's own rule.
func (s SiteState) Converged(hash string) bool {
	return s.Applied(hash) && s.Ready && !s.Stalled && !s.Reconciling
}

// FluxFailed reports whether Flux gave up on the commit: it applied or attempted it, and is
// Stalled, or not Ready while no longer reconciling.
// A source that refused the commit (SourceRefused) failed at it too.
func (s SiteState) FluxFailed(hash string) bool {
	if s.Reachable && hash != "" && s.SourceRefused == hash {
		return true
	}
	attempted := s.Applied(hash) || (s.Reachable && hash != "" && RevisionHash(s.Attempted) == hash)
	return attempted && (s.Stalled || (!s.Ready && !s.Reconciling))
}

// FormatRevision formats a revision the way Flux reports lastAppliedRevision.
func FormatRevision(branch, hash string) string {
	return branch + "@sha1:" + hash
}

// RevisionHash returns the commit hash of a Flux revision ("main@sha1:<hash>", "sha1:<hash>",
// or a bare hash).
func RevisionHash(rev string) string {
	if i := strings.LastIndex(rev, ":"); i >= 0 {
		return rev[i+1:]
	}
	if i := strings.LastIndex(rev, "@"); i >= 0 {
		return rev[i+1:]
	}
	return rev
}

// Short returns the 7-character form of a commit hash.
func Short(hash string) string {
	if len(hash) > 7 {
		return hash[:7]
	}
	return hash
}

// SiteStatus is everything known about one site in a rollout.
type SiteStatus struct {
	Name    string  `json:"name"`
	Branch  string  `json:"branch"`
	Verdict Verdict `json:"verdict"`
	// Promotion is the branch head after promotion (the promotion commit, or the head already
	// carrying the tree); Promoted is true when the branch holds this rollout's promotion
	// commit, whichever attempt wrote it: git, read by trailers, is the truth, and a promoted
	// site is one a revert must undo.
	Promotion string `json:"promotion,omitempty"`
	Promoted  bool   `json:"promoted,omitempty"`
	Previous  string `json:"previous,omitempty"`
	// Revert is the revert commit written for this site, if any.
	Revert string `json:"revert,omitempty"`
	// Failures counts consecutive failed health rounds.
	Failures     int           `json:"failures,omitempty"`
	UnknownSince time.Time     `json:"unknownSince,omitzero"`
	Checks       []CheckResult `json:"checks,omitempty"`
	Revision     string        `json:"revision,omitempty"`
	Message      string        `json:"message,omitempty"`
	UpdatedAt    time.Time     `json:"updatedAt,omitzero"`
}

// ObserveHealth folds one health observation into the site's status, for a site that should
// run the commit hash. A site becomes Degraded after h.FailureThreshold failed rounds in a row
// or after being unreachable for h.UnknownTimeout; Degraded is final.
func (s *SiteStatus) ObserveHealth(st SiteState, hash string, h Health, now time.Time) {
	if s.Verdict == VerdictDegraded || s.Verdict == VerdictReverted {
		return
	}
	s.UpdatedAt = now
	if st.Reachable {
		s.Revision = st.Revision
	}
	if len(st.Checks) > 0 {
		s.Checks = st.Checks
	}
	// A definite failure counts even when another check could not measure; only when nothing
	// definitely failed does an unmeasurable check (or an unreachable site) make it Unknown.
	failure := ""
	if st.Reachable {
		failure = healthFailure(st, hash)
	}
	if why := st.Unknown(); why != "" && failure == "" {
		if s.UnknownSince.IsZero() {
			s.UnknownSince = now
		}
		s.Verdict = VerdictUnknown
		s.Message = why
		if gone := now.Sub(s.UnknownSince); gone >= h.UnknownTimeout {
			s.Verdict = VerdictDegraded
			s.Message = fmt.Sprintf("unknown for %s (unknownTimeout %s): %s", gone, h.UnknownTimeout, why)
			if !st.Reachable {
				s.Message = fmt.Sprintf("unreachable for %s (unknownTimeout %s): %s", gone, h.UnknownTimeout, st.Message)
			}
		}
		return
	}
	s.UnknownSince = time.Time{}
	if failure == "" {
		s.Failures = 0
		s.Verdict = VerdictHealthy
		s.Message = ""
		return
	}
	s.Failures++
	s.Message = fmt.Sprintf("%s (%d of %d failures in a row)", failure, s.Failures, h.FailureThreshold)
	s.Verdict = VerdictHealthy
	if s.Failures >= h.FailureThreshold {
		s.Verdict = VerdictDegraded
		s.Message = fmt.Sprintf("%s, %s in a row", failure, Count(s.Failures, "time"))
	}
}

// HealthyAt reports whether the observation is a healthy one of a site that should run the
// commit hash: reachable, every check measured and passing, Flux applied the commit and is
// not failing. A health round reports only the observations that are not (the changes), and
// ObserveHealth treats the others as healthy.
func (s SiteState) HealthyAt(hash string) bool {
	return s.Reachable && s.Unknown() == "" && healthFailure(s, hash) == ""
}

// healthFailure describes why an observation is not healthy, or returns "".
func healthFailure(st SiteState, hash string) string {
	switch {
	case !st.Applied(hash):
		return fmt.Sprintf("applied revision %q instead of %s", st.Revision, Short(hash))
	case st.Stalled:
		return "flux stalled: " + st.Message
	case !st.Ready && !st.Reconciling:
		return "flux not ready: " + st.Message
	}
	for _, c := range st.Checks {
		if !c.OK && !c.Unknown {
			return c.String()
		}
	}
	return ""
}

// WaveStatus is the state of one wave.
type WaveStatus struct {
	Name        string       `json:"name"`
	Index       int          `json:"index"`
	State       State        `json:"state"`
	Sites       []SiteStatus `json:"sites,omitempty"`
	StartedAt   time.Time    `json:"startedAt,omitzero"`
	ConvergedAt time.Time    `json:"convergedAt,omitzero"`
	BakeUntil   time.Time    `json:"bakeUntil,omitzero"`
	FinishedAt  time.Time    `json:"finishedAt,omitzero"`
	Message     string       `json:"message,omitempty"`
	// Policy is the last policy decision before the wave started (or while it waited).
	Policy *PolicyDecision `json:"policy,omitempty"`
	// Approval is the wave's approval request and its votes, once requested.
	Approval *ApprovalStatus `json:"approval,omitempty"`
	// Unsettled is true when the wave's workflow ended without reporting its sites (it was
	// terminated, timed out or reset): any of them may hold a promotion, so a revert of the
	// wave asks git about each one.
	Unsettled bool `json:"unsettled,omitempty"`
}

// SiteIndex maps each site's name to its position in Sites, for waves too large to search a site
// at a time.
func (w WaveStatus) SiteIndex() map[string]int {
	index := make(map[string]int, len(w.Sites))
	for i, s := range w.Sites {
		index[s.Name] = i
	}
	return index
}

// Site returns a pointer to the named site's status, or nil.
func (w *WaveStatus) Site(name string) *SiteStatus {
	for i := range w.Sites {
		if w.Sites[i].Name == name {
			return &w.Sites[i]
		}
	}
	return nil
}

// Causes: why a rollout ended (Status.Cause).
const (
	CauseLoadFailed       = "LoadFailed"       // the plan could not be loaded or is invalid
	CausePolicyFailed     = "PolicyFailed"     // the policies could not be evaluated
	CausePolicyDenied     = "PolicyDenied"     // a policy denied a wave
	CauseApprovalRejected = "ApprovalRejected" // an approver rejected a wave
	CauseApprovalExpired  = "ApprovalExpired"  // a wave's approval timed out (onTimeout reject)
	CauseApprovalUnmet    = "ApprovalUnmet"    // too few approvers could vote
	CauseWaveDegraded     = "WaveDegraded"     // a site degraded past its wave's failure budget
	CauseWaveFailed       = "WaveFailed"       // a wave could not go on (a push failed for good)
	CauseWaveLost         = "WaveLost"         // a wave's workflow ended without a verdict
	CauseWatchDegraded    = "WatchDegraded"    // a site of a wave that succeeded degraded later
	CauseStepFailed       = "StepFailed"       // a step of the rollout failed for good
	CauseAborted          = "Aborted"          // an operator aborted it
	CauseRolledBack       = "RolledBack"       // an operator rolled it back
	CauseSuperseded       = "Superseded"       // a newer commit of the fleet went next
	CauseCancelled        = "Cancelled"        // its workflow was cancelled in Temporal
)

// Status is the whole state of a rollout, as the status query returns it.
type Status struct {
	Rollout string `json:"rollout"`
	Fleet   string `json:"fleet"`
	Commit  string `json:"commit"`
	Subject string `json:"subject,omitempty"`
	State   State  `json:"state"`
	// Simulated is true when the worker that ran the rollout observed a simulated fleet
	// (serve --driver sim, dev, rehearse): its health gates checked nothing real.
	Simulated bool `json:"simulated,omitempty"`
	// Wave is the name of the current (or last) wave.
	Wave   string       `json:"wave,omitempty"`
	Waves  []WaveStatus `json:"waves,omitempty"`
	Reason string       `json:"reason,omitempty"`
	// Cause is why the rollout ended, as a code (CausePolicyDenied, ...): Reason says it in
	// words, as Flux pairs a condition's Reason with its Message. Empty while it runs and when
	// it succeeded.
	Cause      string    `json:"cause,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// Controls lists the operators' actions, oldest first.
	Controls []Control `json:"controls,omitempty"`
	// Operators may control the rollout from Slack (the plan's Operators, groups unresolved).
	Operators []string `json:"operators,omitempty"`
	// Waiting lists the activities in flight with their attempt and last failure; the client
	// fills it from Temporal, the workflow does not.
	Waiting []string `json:"waiting,omitempty"`
	// CatchUp is set on the status of a catch-up (catchup/<fleet>/<site>), not a rollout's.
	CatchUp *CatchUpOf `json:"catchUp,omitempty"`
}

// DeferredSites lists the rollout's Deferred sites, in wave order.
func (s Status) DeferredSites() []string {
	var names []string
	for _, w := range s.Waves {
		for _, site := range w.Sites {
			if site.Verdict == VerdictDeferred {
				names = append(names, site.Name)
			}
		}
	}
	return names
}

// CatchUpVerdict is the verdict of a catch-up's one site, "" before it has one (while it
// probes, or before its wave started).
func (s Status) CatchUpVerdict() Verdict {
	for _, w := range s.Waves {
		for _, site := range w.Sites {
			if site.Verdict != VerdictPending {
				return site.Verdict
			}
		}
	}
	return ""
}

// CatchUpOf says which site a catch-up brings to its commit, which rollout deferred it, and
// whether it still probes the site, unreachable since OfflineSince.
type CatchUpOf struct {
	Site         string    `json:"site"`
	Rollout      string    `json:"rollout"`
	Probing      bool      `json:"probing,omitempty"`
	OfflineSince time.Time `json:"offlineSince,omitzero"`
}

// DeferredNote says which sites of the rollout were Deferred (offline, health.offline), ""
// when none: a rollout that succeeded without them says so as its Reason.
func (s Status) DeferredNote() string {
	names := s.DeferredSites()
	if len(names) == 0 {
		return ""
	}
	list := strings.Join(names, ", ")
	if len(names) > 3 {
		list = strings.Join(names[:3], ", ") + fmt.Sprintf(" and %d more", len(names)-3)
	}
	return fmt.Sprintf("%s deferred (offline): %s", Count(len(names), "site"), list)
}

// ApprovalWave is the wave a vote that names none is on: the last one that asked for approval.
func (s Status) ApprovalWave() (int, bool) {
	for i := len(s.Waves) - 1; i >= 0; i-- {
		if s.Waves[i].Approval != nil {
			return i, true
		}
	}
	return -1, false
}

// CompactAbove is the number of sites above which a wave's status is compacted where it is
// recorded in a workflow history (a wave's result, a rollout's result).
const CompactAbove = 1000

// WaveChange is what changed in a wave's status: its phase, message and times, and the sites
// whose verdict, commits, failures or message changed. A wave's workflow reports its changes to
// its rollout as it goes, so the rollout's status query shows the wave live.
type WaveChange struct {
	Wave        string
	State       State
	Message     string       `json:",omitempty"`
	StartedAt   time.Time    `json:",omitzero"`
	ConvergedAt time.Time    `json:",omitzero"`
	BakeUntil   time.Time    `json:",omitzero"`
	FinishedAt  time.Time    `json:",omitzero"`
	Sites       []SiteStatus `json:",omitempty"`
}

// Changes returns what changed from before to after (two statuses of the same wave, its sites
// in the same order), and whether anything did. For a wave of more than CompactAbove sites the
// changed sites that are Healthy or Pending are compacted, as Compact does.
func Changes(before, after WaveStatus) (WaveChange, bool) {
	c, changed, _ := Diff(before, after)
	return c, changed
}

// Diff is Changes, and also whether the change decides something the rollout must hear of at
// once: the wave's state or times, or a site's promotion, revert, verdict or first
// measurements. The rest (later measurements, failure counts, messages, a bake lengthened)
// may wait.
func Diff(before, after WaveStatus) (c WaveChange, changed, decisive bool) {
	c = WaveChange{Wave: after.Name, State: after.State, Message: after.Message, StartedAt: after.StartedAt,
		ConvergedAt: after.ConvergedAt, BakeUntil: after.BakeUntil, FinishedAt: after.FinishedAt}
	decisive = before.State != after.State || !before.ConvergedAt.Equal(after.ConvergedAt) || !before.StartedAt.Equal(after.StartedAt) ||
		!before.FinishedAt.Equal(after.FinishedAt) || len(before.Sites) != len(after.Sites)
	changed = decisive || before.Message != after.Message || !before.BakeUntil.Equal(after.BakeUntil)
	large := len(after.Sites) > CompactAbove
	values := len(after.Sites) <= LiveMeasurements
	for i, s := range after.Sites {
		if i < len(before.Sites) {
			b := before.Sites[i]
			same := b.Verdict == s.Verdict && b.Promotion == s.Promotion && b.Promoted == s.Promoted && b.Revert == s.Revert
			if same && b.Failures == s.Failures && b.Message == s.Message && sameChecks(b.Checks, s.Checks, values) {
				continue
			}
			// A site's first measurements decide too: they are its first evidence.
			decisive = decisive || !same || (len(b.Checks) == 0 && len(s.Checks) > 0)
		}
		if large {
			s = s.compact()
		}
		c.Sites = append(c.Sites, s)
	}
	return c, changed || len(c.Sites) > 0, decisive
}

// LiveMeasurements is the size up to which a wave reports every new measurement of its
// checks; a larger wave reports a site's checks when one passes or fails where it did not,
// so its rollout's status shows the measurements of the last change.
const LiveMeasurements = 20

// sameChecks reports whether two sets of measurements say the same: the same checks passing,
// failing or unknown, and with values, the same values.
func sameChecks(a, b []CheckResult, values bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].OK != b[i].OK || a[i].Unknown != b[i].Unknown || (values && a[i].Value != b[i].Value) {
			return false
		}
	}
	return true
}

// Apply merges a change of the wave into its status.
func (w *WaveStatus) Apply(c WaveChange) {
	w.State, w.Message = c.State, c.Message
	w.StartedAt, w.ConvergedAt, w.BakeUntil, w.FinishedAt = c.StartedAt, c.ConvergedAt, c.BakeUntil, c.FinishedAt
	if len(c.Sites) == 0 {
		return
	}
	index := w.SiteIndex()
	for _, s := range c.Sites {
		if i, ok := index[s.Name]; ok {
			w.Sites[i] = s
		}
	}
}

// compact keeps what a large wave records of a Pending site, or of a Healthy one without a
// failed round.
func (s SiteStatus) compact() SiteStatus {
	if (s.Verdict == VerdictHealthy && s.Failures == 0) || s.Verdict == VerdictPending {
		// A pending site keeps since when it is unreachable (health.offline counts from it).
		return SiteStatus{Name: s.Name, Branch: s.Branch, Verdict: s.Verdict, Promoted: s.Promoted, UnknownSince: s.UnknownSince}
	}
	return s
}

// Compact returns the wave's status for the history: for a wave of more than CompactAbove
// sites, the sites that are Pending, or Healthy without a failed round, keep only their name,
// branch, verdict and whether they were promoted (git has their commits: `git log
// sites/<site>`); every other site keeps all it has. A wave of thousands of sites then records
// a few bytes a healthy site instead of its commits, revision and measurements.
func (w WaveStatus) Compact() WaveStatus {
	if len(w.Sites) <= CompactAbove {
		return w
	}
	sites := make([]SiteStatus, len(w.Sites))
	for i, s := range w.Sites {
		sites[i] = s.compact()
	}
	w.Sites = sites
	return w
}

// Carry returns the wave's status for a wave that continues as new: like Compact, except that
// a healthy site keeps the commit it must run (Promotion) and its health-round counters, which
// the runbook needs to go on.
func (w WaveStatus) Carry() WaveStatus {
	c := w.Compact()
	if len(w.Sites) <= CompactAbove {
		return c
	}
	// Compact made a new slice: the caller's sites stay as they are.
	for i := range c.Sites {
		c.Sites[i].Promotion = w.Sites[i].Promotion
	}
	return c
}

// Compact returns the status with every wave compacted (WaveStatus.Compact).
func (s Status) Compact() Status {
	if s.Waves == nil {
		return s
	}
	waves := make([]WaveStatus, len(s.Waves))
	for i, w := range s.Waves {
		waves[i] = w.Compact()
	}
	s.Waves = waves
	return s
}

// NewWaveStatus returns the initial status of a wave of the plan.
func NewWaveStatus(p *Plan, index int) WaveStatus {
	w := p.Waves[index]
	ws := WaveStatus{Name: w.Name, Index: index, State: StatePending}
	for _, name := range w.Sites {
		ws.Sites = append(ws.Sites, SiteStatus{Name: name, Branch: p.SiteBranchFor(name), Verdict: VerdictPending})
	}
	return ws
}

// RevertSet is the sites of one wave to revert.
type RevertSet struct {
	Wave  string
	Sites []string
}

// RevertOrder lists what to revert after wave failed degraded, for a rollback scope: the
// degraded sites (site), every site the failed wave promoted (wave), or every site the rollout
// promoted (all). Waves come in reverse order, and only sites this rollout wrote to are listed,
// except in an Unsettled wave under scope wave or all: there every site not yet reverted is
// listed, and the revert writes only where git holds a promotion of the rollout.
func RevertOrder(waves []WaveStatus, failed int, scope string) []RevertSet {
	var out []RevertSet
	for i := failed; i >= 0; i-- {
		if i != failed && scope != ScopeAll {
			break
		}
		set := RevertSet{Wave: waves[i].Name}
		unsettled := waves[i].Unsettled && scope != ScopeSite
		for _, s := range waves[i].Sites {
			if (!s.Promoted && !unsettled) || s.Revert != "" {
				continue
			}
			if scope == ScopeSite && s.Verdict != VerdictDegraded {
				continue
			}
			set.Sites = append(set.Sites, s.Name)
		}
		if len(set.Sites) > 0 {
			out = append(out, set)
		}
	}
	return out
}
