package rollout

import (
	"slices"
	"time"
)

// PolicyDir is where a fleet repo keeps its Rego policies (every .rego file below it).
const PolicyDir = ".fleetwave/policies"

// Policies are the built-in policies a plan configures in spec.policies. They are evaluated
// before every wave, together with the Rego policies of the fleet repo.
type Policies struct {
	Freezes       []Freeze       `json:",omitempty"`
	BusinessHours *BusinessHours `json:",omitempty"`
	// MaxSitesPerWave denies a wave with more sites; 0 means no limit.
	MaxSitesPerWave int `json:",omitempty"`
	// MinSoak is how long the previous wave must have been finished before the next starts,
	// unless the wave sets its own.
	MinSoak time.Duration `json:",omitempty"`
}

// Freeze is a window during which waves do not start: once (no RRule) or recurring (an RFC 5545
// RRULE whose first occurrence is Start), each occurrence lasting Duration.
type Freeze struct {
	Name string
	// Start is the first occurrence, as wall-clock time in Timezone.
	Start    time.Time
	Timezone string
	Duration time.Duration
	RRule    string `json:",omitempty"`
	// Waves limits the freeze to these waves; empty means every wave.
	Waves []string `json:",omitempty"`
}

// BusinessHours lets a wave start only when it is business hours at every one of its sites, in
// each site's time zone (UTC when the site has none).
type BusinessHours struct {
	Days []time.Weekday
	// Start and End are minutes after midnight; End is exclusive.
	Start, End int
	Waves      []string `json:",omitempty"`
}

// Empty reports whether no built-in policy is configured.
func (p Policies) Empty() bool {
	return len(p.Freezes) == 0 && p.BusinessHours == nil && p.MaxSitesPerWave == 0 && p.MinSoak == 0
}

// AppliesTo reports whether a policy limited to waves (empty: every wave) applies to wave.
func AppliesTo(waves []string, wave string) bool {
	if len(waves) == 0 {
		return true
	}
	return slices.Contains(waves, wave)
}

// PolicyFile is one Rego source file of the fleet repo.
type PolicyFile struct {
	Path   string
	Source string
}

// PolicyInput is the `input` document policies are evaluated against, before a wave starts.
// Field names are the JSON names Rego sees (input.wave.sites[_].labels.region).
type PolicyInput struct {
	Rollout       PolicyRollout      `json:"rollout"`
	Wave          PolicyWave         `json:"wave"`
	PreviousWaves []PolicyWaveResult `json:"previousWaves"`
	Approvals     []PolicyApproval   `json:"approvals"`
	// Now is the workflow's time of the evaluation (RFC 3339), never the wall clock of the
	// machine evaluating it.
	Now time.Time `json:"now"`
}

// PolicyRollout describes the rollout being gated.
type PolicyRollout struct {
	ID        string    `json:"id"`
	Fleet     string    `json:"fleet"`
	Commit    string    `json:"commit"`
	Author    string    `json:"author"`
	Message   string    `json:"message"`
	StartedAt time.Time `json:"startedAt"`
}

// PolicyWave describes the wave about to start.
type PolicyWave struct {
	Name  string       `json:"name"`
	Index int          `json:"index"`
	Sites []PolicySite `json:"sites"`
}

// PolicySite is one site of the wave.
type PolicySite struct {
	Name     string            `json:"name"`
	Labels   map[string]string `json:"labels"`
	Timezone string            `json:"timezone"`
}

// PolicyWaveResult is how an earlier wave of the rollout went.
type PolicyWaveResult struct {
	Name       string             `json:"name"`
	Index      int                `json:"index"`
	State      State              `json:"state"`
	StartedAt  time.Time          `json:"startedAt"`
	FinishedAt time.Time          `json:"finishedAt"`
	Verdicts   map[string]Verdict `json:"verdicts"`
}

// PolicyApproval is an approving vote given so far in the rollout.
type PolicyApproval struct {
	Wave string    `json:"wave"`
	By   string    `json:"by"`
	Via  string    `json:"via"`
	At   time.Time `json:"at"`
}

// Outcomes of a policy decision.
const (
	PolicyAllow = "allow"
	PolicyDeny  = "deny"
	PolicyWait  = "wait"
)

// PolicyDecision is the result of evaluating every policy before a wave. Deny outranks wait;
// wait lasts until the latest WaitUntil any policy asked for.
type PolicyDecision struct {
	Outcome string `json:"outcome"`
	// Deny lists every denial message; Reasons says why the wave waits.
	Deny      []string  `json:"deny,omitempty"`
	Reasons   []string  `json:"reasons,omitempty"`
	WaitUntil time.Time `json:"waitUntil,omitzero"`
	// At is the time the decision was made for (PolicyInput.Now).
	At time.Time `json:"at,omitzero"`
}

// Combine merges the verdicts of several policies into one decision for time at.
func Combine(at time.Time, deny []string, waits map[string]time.Time) PolicyDecision {
	d := PolicyDecision{Outcome: PolicyAllow, At: at}
	if len(deny) > 0 {
		d.Outcome, d.Deny = PolicyDeny, deny
		return d
	}
	for reason, until := range waits {
		if !until.After(at) {
			continue
		}
		d.Outcome = PolicyWait
		d.Reasons = append(d.Reasons, reason)
		if until.After(d.WaitUntil) {
			d.WaitUntil = until
		}
	}
	slices.Sort(d.Reasons)
	return d
}

// PolicyWave describes wave i of the plan for policies: its sites with labels (never null) and
// time zones.
func (p *Plan) PolicyWave(i int) PolicyWave {
	w := p.Waves[i]
	out := PolicyWave{Name: w.Name, Index: i, Sites: []PolicySite{}}
	for _, name := range w.Sites {
		site, _ := p.Site(name)
		labels := site.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		out.Sites = append(out.Sites, PolicySite{Name: name, Labels: labels, Timezone: site.Timezone})
	}
	return out
}

// PolicyHistory describes finished waves for policies.
func PolicyHistory(waves []WaveStatus) []PolicyWaveResult {
	out := []PolicyWaveResult{}
	for _, w := range waves {
		r := PolicyWaveResult{Name: w.Name, Index: w.Index, State: w.State, StartedAt: w.StartedAt, FinishedAt: w.FinishedAt, Verdicts: map[string]Verdict{}}
		for _, s := range w.Sites {
			r.Verdicts[s.Name] = s.Verdict
		}
		out = append(out, r)
	}
	return out
}
