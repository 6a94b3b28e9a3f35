package rollout

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// PlanError lists everything wrong with a plan file, each issue with its position.
type PlanError struct {
	File   string
	Issues []Issue
}

// Issue is one problem in a plan file. Line and Column are 1-based; 0 when unknown.
type Issue struct {
	// File is the file the issue is in when it is not the PlanError's: a site file.
	File         string `json:",omitempty"`
	Line, Column int
	Message      string
}

// Error formats every issue as "file:line:col: message", one per line.
func (e *PlanError) Error() string {
	lines := make([]string, len(e.Issues))
	for i, is := range e.Issues {
		lines[i] = fmt.Sprintf("%s:%d:%d: %s", cmp.Or(is.File, e.File), is.Line, is.Column, is.Message)
	}
	return strings.Join(lines, "\n")
}

// nameRE is what site, wave and fleet names may look like: they end up in branch names,
// workflow IDs and Temporal search attributes.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$`)

// ParsePlan parses and validates a plan file that keeps its sites in the file itself: a plan
// with spec.siteFiles needs ParsePlanFS. file names it in error messages. On failure the error
// is a *PlanError listing every problem found with its line and column.
func ParsePlan(file string, data []byte) (*Plan, error) {
	return ParsePlanFS(file, data, nil)
}

// ParsePlanFS parses and validates a plan file, reading the site files its spec.siteFiles names
// from files: the fleet repo at the plan's commit, rooted where the plan is. On failure the
// error is a *PlanError listing every problem found, in the plan and in the site files, with
// its file, line and column.
func ParsePlanFS(file string, data []byte, files fs.FS) (*Plan, error) {
	var doc fileDoc
	v, err := parseDoc(file, data, Kind, &doc)
	if err != nil {
		return nil, err
	}
	v.files = files
	plan := v.plan(doc)
	if err := v.err(file); err != nil {
		return nil, err
	}
	return plan, nil
}

// parseDoc checks a document's size and nesting, and parses its one YAML document (a kind
// document) strictly into out; the validator it returns reports positions in it.
func parseDoc(file string, data []byte, kind string, out any) (*validator, error) {
	if issue := checkLimits(data, "plan"); issue != nil {
		return nil, &PlanError{File: file, Issues: []Issue{*issue}}
	}
	if bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		return nil, &PlanError{File: file, Issues: []Issue{{Line: 1, Column: 1,
			Message: "the file starts with a byte order mark (BOM), which YAML does not expect here: save it as UTF-8 without BOM"}}}
	}
	if issues := refuseYAML(data, kind); len(issues) > 0 {
		return nil, &PlanError{File: file, Issues: issues}
	}
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		return nil, &PlanError{File: file, Issues: []Issue{yamlIssue(err, out)}}
	}
	if len(f.Docs) != 1 || f.Docs[0].Body == nil {
		return nil, &PlanError{File: file, Issues: []Issue{{Line: 1, Column: 1, Message: "expected exactly one YAML document with a " + kind}}}
	}
	crash, err := decode(f.Docs[0].Body, out)
	switch {
	case crash != nil:
		return nil, &PlanError{File: file, Issues: []Issue{*crash}}
	case err != nil:
		return nil, &PlanError{File: file, Issues: []Issue{yamlIssue(err, out)}}
	}
	return &validator{file: f, name: file}, nil
}

// refuseYAML lists the YAML features a fleetwave file may not use, at their positions, from the
// file's tokens (linear in its size, before the YAML is parsed):
//   - anchors and aliases: an alias repeats its value wherever it stands, so a file far under
//     MaxPlanBytes can decode to gigabytes (one map of 15,000 labels aliased by 20,000 sites;
//     nested aliases grow exponentially); refusing them is simpler to explain than a bound on
//     what they expand to;
//   - tags other than !!str: the files have no use for them, and a tag on a scalar where a list
//     belongs crashed the decoder.
func refuseYAML(data []byte, kind string) []Issue {
	return refuseTokens(lexer.Tokenize(string(data)), kind)
}

// refuseTokens is refuseYAML over a file's tokens, for a caller that parses them next.
func refuseTokens(tokens token.Tokens, kind string) []Issue {
	var issues []Issue
	for _, tk := range tokens {
		at := func(format string, args ...any) {
			line, col := 1, 1
			if tk.Position != nil {
				line, col = tk.Position.Line, tk.Position.Column
			}
			issues = append(issues, Issue{Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
		}
		name := ""
		if tk.Next != nil {
			name = tk.Next.Value
		}
		switch tk.Type {
		case token.AnchorType:
			at("YAML anchors (&%s) are not allowed in a %s: an alias repeats its value wherever it stands, so a small file could decode to gigabytes; write the values out", name, kind)
		case token.AliasType:
			at("YAML aliases (*%s) are not allowed in a %s: write the value out", name, kind)
		case token.TagType:
			if tk.Value != "!!str" {
				at("YAML tags (%s) are not allowed in a %s (only !!str is): quote the value instead", tk.Value, kind)
			}
		}
		if len(issues) >= maxRefusals {
			break
		}
	}
	return issues
}

// maxRefusals bounds the issues refuseYAML reports: a file of a million aliases needs no
// million lines to say so.
const maxRefusals = 20

// decode decodes the document into out strictly. A panic of the decoder (a bug in it, found
// by fuzzing) is returned as crash, an issue at the document's start: never a crash of the
// worker.
func decode(body ast.Node, out any) (crash *Issue, err error) {
	defer func() {
		if p := recover(); p != nil {
			tk := body.GetToken()
			crash = &Issue{Line: tk.Position.Line, Column: tk.Position.Column,
				Message: fmt.Sprintf("the YAML decoder failed on this file (%v): simplify its YAML, and report the file to fleetwave", p)}
		}
	}()
	return nil, yaml.NodeToValue(body, out, yaml.Strict())
}

// err returns the issues found, sorted by position, or nil.
func (v *validator) err(file string) error {
	if len(v.issues) == 0 {
		return nil
	}
	slices.SortStableFunc(v.issues, func(a, b Issue) int {
		// The plan's own issues first, then each site file's.
		return cmp.Or(cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return &PlanError{File: file, Issues: v.issues}
}

type validator struct {
	name     string // the file's name, for messages
	file     *ast.File
	issues   []Issue
	warnings []Issue
	// sourceBranch and siteBranch are the plan's, once read, for the sites' branches.
	sourceBranch, siteBranch string
	// files holds the site files (ParsePlanFS); nil when the caller has none.
	files fs.FS
	// sitesIncomplete is set when a site file could not be read: a wave that finds no site
	// then says nothing, as its sites may be in that file.
	sitesIncomplete bool
	// zones caches time zone lookups (timezone).
	zones map[string]error
}

// errorf records an issue at the node found by the YAML path; when the path does not exist
// (a field left out) it reports the nearest enclosing node that does.
func (v *validator) errorf(path, format string, args ...any) {
	line, col := v.position(path)
	v.issues = append(v.issues, Issue{Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) position(path string) (int, int) {
	for path != "" && path != "$" {
		if p, err := yaml.PathString(path); err == nil {
			if n, err := p.FilterFile(v.file); err == nil && n != nil {
				if tk := n.GetToken(); tk != nil && tk.Position != nil {
					return tk.Position.Line, tk.Position.Column
				}
			}
		}
		cut := strings.LastIndexAny(path, ".[")
		if cut < 0 {
			break
		}
		path = path[:cut]
	}
	return 1, 1
}

func (v *validator) duration(path, s string, def time.Duration, allowZero bool) time.Duration {
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		v.errorf(path, "invalid duration %q: use a number with a unit, like 30s, 10m or 1h", s)
		return def
	}
	if d < 0 || (d == 0 && !allowZero) {
		v.errorf(path, "duration %q must be positive", s)
		return def
	}
	return d
}

func (v *validator) branch(path, b string) {
	if !ValidBranch(b) {
		v.errorf(path, "invalid branch name %q", b)
	}
}

// ValidBranch reports whether b can name a git branch: git check-ref-format's rules for
// refs/heads/<b> (no component that starts with "." or ends with ".lock", no "..", "@{", "//",
// control characters or any of ` ~^:?*[\`, not "@", no leading or trailing "/", no trailing ".").
func ValidBranch(b string) bool {
	if b == "" || b == "@" || strings.HasPrefix(b, "-") || strings.HasPrefix(b, "/") || strings.HasSuffix(b, "/") ||
		strings.HasSuffix(b, ".") || strings.Contains(b, "..") || strings.Contains(b, "@{") || strings.Contains(b, "//") ||
		strings.ContainsAny(b, " ~^:?*[\\\x7f") {
		return false
	}
	for _, c := range b {
		if c < 0x20 {
			return false
		}
	}
	for _, part := range strings.Split(b, "/") {
		if strings.HasPrefix(part, ".") || strings.HasSuffix(part, ".lock") {
			return false
		}
	}
	return true
}

// CheckBranches returns an error naming every site whose branch is not a valid branch name or
// is one of reserved (the source branch, the evidence branch): its promotion would be written
// there. The parser checks against the plan's own source branch; serve and LoadPlan check
// again against the branches the worker keeps.
func (p *Plan) CheckBranches(reserved ...string) error {
	var problems []string
	for _, s := range p.Sites {
		b := p.SiteBranchFor(s.Name)
		switch {
		case !ValidBranch(b):
			problems = append(problems, fmt.Sprintf("site %s: its branch %q is not a valid branch name", s.Name, b))
		case slices.Contains(reserved, b):
			problems = append(problems, fmt.Sprintf("site %s: its branch %q is a branch fleetwave keeps (the source or the evidence branch); rename the site or change siteBranch", s.Name, b))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func (v *validator) plan(doc fileDoc) *Plan {
	if doc.APIVersion != APIVersion {
		v.errorf("$.apiVersion", "apiVersion must be %q, got %q", APIVersion, doc.APIVersion)
	}
	if doc.Kind != Kind {
		v.errorf("$.kind", "kind must be %q, got %q", Kind, doc.Kind)
	}
	if doc.Metadata.Name != "" && !nameRE.MatchString(doc.Metadata.Name) {
		v.errorf("$.metadata.name", "invalid fleet name %q: use lowercase letters, digits, '.', '_' and '-'", doc.Metadata.Name)
	}
	s := doc.Spec
	p := &Plan{
		Name:         doc.Metadata.Name,
		SourceBranch: cmp.Or(s.SourceBranch, DefaultSourceBranch),
		SiteBranch:   cmp.Or(s.SiteBranch, DefaultSiteBranch),
	}
	v.branch("$.spec.sourceBranch", p.SourceBranch)
	if !strings.Contains(p.SiteBranch, "{site}") {
		v.errorf("$.spec.siteBranch", "siteBranch %q must contain {site}", p.SiteBranch)
	} else {
		v.branch("$.spec.siteBranch", strings.ReplaceAll(p.SiteBranch, "{site}", "x"))
		if p.SiteBranchFor("x") == p.SourceBranch {
			v.errorf("$.spec.siteBranch", "siteBranch must differ from sourceBranch")
		}
	}

	v.sourceBranch, v.siteBranch = p.SourceBranch, p.SiteBranch
	entries := make([]siteEntry, len(s.Sites))
	for i, fs := range s.Sites {
		entries[i] = siteEntry{fileSite: fs, doc: v, path: fmt.Sprintf("$.spec.sites[%d]", i)}
	}
	if s.SiteFiles != "" {
		entries = append(entries, v.siteFiles(s.SiteFiles)...)
	}
	p.Sites = v.sites(entries, s.SiteFiles != "")
	p.Waves = v.waves(s.Waves, p.Sites, p.Name)
	p.Health = v.health(s.Health)
	p.Health.Checks = v.checks(s.Health.Checks, p.Sites, p.Health.Interval)
	switch s.OnNewCommit {
	case "", OnNewCommitSupersede:
		p.OnNewCommit = OnNewCommitSupersede
	case OnNewCommitQueue:
		p.OnNewCommit = OnNewCommitQueue
	default:
		v.errorf("$.spec.onNewCommit", "onNewCommit must be supersede or queue, got %q", s.OnNewCommit)
	}
	if s.Policies != nil {
		p.Policies = v.policies(*s.Policies, p.Waves)
	}
	if s.Notify != nil && s.Notify.Slack != nil {
		p.Notify.Slack = v.slack(*s.Notify.Slack)
	}
	p.Rollback = Rollback{Automatic: true, Scope: ScopeWave}
	if r := s.Rollback; r != nil {
		if r.Automatic != nil {
			p.Rollback.Automatic = *r.Automatic
		}
		switch r.Scope {
		case "":
		case ScopeSite, ScopeWave, ScopeAll:
			p.Rollback.Scope = r.Scope
		default:
			v.errorf("$.spec.rollback.scope", "rollback scope must be site, wave or all, got %q", r.Scope)
		}
	}
	v.gates(p)
	p.Warnings = v.warnings
	return p
}

// gates warns about waves whose bake is shorter than a failure streak: a failing site is then
// decided after the bake, so the wave's gate lasts longer than its bake says.
func (v *validator) gates(p *Plan) {
	h := p.Health
	streak := time.Duration(h.FailureThreshold-1) * h.Interval
	for i, w := range p.Waves {
		if w.Bake < streak {
			v.warnf(fmt.Sprintf("$.spec.waves[%d].name", i), "wave %s: bake %s is shorter than (failureThreshold - 1) × interval = %s: "+
				"a site failing at the end of the bake is observed past it until it passes a clean round or degrades", w.Name, w.Bake, streak)
		}
	}
}

// warnf records a warning at the node found by the YAML path, as errorf does an issue.
func (v *validator) warnf(path, format string, args ...any) {
	line, col := v.position(path)
	v.warnings = append(v.warnings, Issue{Line: line, Column: col, Message: fmt.Sprintf(format, args...)})
}

// sites validates the sites, from the plan and from its site files, in that order.
func (v *validator) sites(in []siteEntry, fromFiles bool) []Site {
	if len(in) == 0 && !fromFiles {
		v.errorf("$.spec.sites", "the plan lists no sites")
	}
	first := map[string]siteEntry{}
	out := make([]Site, 0, len(in))
	for i, e := range in {
		switch {
		case e.Name == "":
			v.siteErrorf(e, "", "site %d has no name", i+1)
		case !nameRE.MatchString(e.Name):
			v.siteErrorf(e, ".name", "invalid site name %q: use lowercase letters, digits, '.', '_' and '-'", e.Name)
		}
		if f, dup := first[e.Name]; dup && e.Name != "" {
			file, line, col := f.at(".name")
			where := fmt.Sprintf("at %s:%d:%d", cmp.Or(file, v.name), line, col)
			if f.file == e.file {
				where = fmt.Sprintf("on line %d", line)
			}
			v.siteErrorf(e, ".name", "duplicate site name %q (first defined %s)", e.Name, where)
			v.sitesIncomplete = true
			continue
		}
		first[e.Name] = e
		if b := strings.ReplaceAll(v.siteBranch, "{site}", e.Name); e.Name != "" && nameRE.MatchString(e.Name) {
			switch {
			case !ValidBranch(b):
				v.siteErrorf(e, ".name", "site %q: its branch %q is not a valid branch name (git check-ref-format): rename the site", e.Name, b)
			case b == v.sourceBranch:
				v.siteErrorf(e, ".name", "site %q: its branch %q is the source branch: its promotions would be written onto it; rename the site or change siteBranch", e.Name, b)
			}
		}
		if e.Timezone != "" {
			if err := v.timezone(e.Timezone); err != nil {
				v.siteErrorf(e, ".timezone", "site %q: unknown time zone %q", e.Name, e.Timezone)
			}
		}
		if c := e.Cluster; c != nil {
			if c.Kustomization != "" {
				if ns, name, ok := strings.Cut(c.Kustomization, "/"); !ok || ns == "" || name == "" {
					v.siteErrorf(e, ".cluster.kustomization", "kustomization must be namespace/name, got %q", c.Kustomization)
				}
			}
			if c.Kustomizations != nil {
				switch {
				case c.Kustomization != "":
					v.siteErrorf(e, ".cluster.kustomizations", "site %q: set kustomization or kustomizations, not both", e.Name)
				case len(c.Kustomizations) == 0:
					v.siteErrorf(e, ".cluster.kustomizations", "site %q: kustomizations lists none; leave it out for %s", e.Name, "flux-system/flux-system")
				}
				for j, ks := range c.Kustomizations {
					at := fmt.Sprintf(".cluster.kustomizations[%d]", j)
					if ns, name, ok := strings.Cut(ks, "/"); !ok || ns == "" || name == "" {
						v.siteErrorf(e, at, "kustomization must be namespace/name, got %q", ks)
					} else if slices.Contains(c.Kustomizations[:j], ks) {
						v.siteErrorf(e, at, "site %q lists kustomization %s twice", e.Name, ks)
					}
				}
			}
		}
		site := Site{Name: e.Name, Labels: e.Labels, Timezone: e.Timezone, Cluster: e.Cluster}
		if e.file != "" {
			file, line, _ := e.at("")
			site.From = fmt.Sprintf("%s:%d", file, line)
		}
		out = append(out, site)
	}
	return out
}

// timezone checks that a time zone exists, reading each zone once per plan: a fleet of 10,000
// sites names a handful of zones.
func (v *validator) timezone(name string) error {
	if err, ok := v.zones[name]; ok {
		return err
	}
	if v.zones == nil {
		v.zones = map[string]error{}
	}
	_, err := time.LoadLocation(name)
	v.zones[name] = err
	return err
}

// approval validates a wave's approval: known approver forms, no duplicates, a quorum the
// approvers can reach.
func (v *validator) approval(path, wave string, fa fileApproval) *Approval {
	a := &Approval{Approvers: fa.Approvers, Quorum: 1, OnTimeout: OnTimeoutReject,
		Timeout: v.duration(path+".timeout", fa.Timeout, DefaultApprovalTimeout, false)}
	if len(fa.Approvers) == 0 {
		v.errorf(path, "wave %q: approval needs approvers (Slack user IDs like U012ABC, or user groups like \"@sre-leads\")", wave)
	}
	v.people(path+".approvers", "wave "+strconv.Quote(wave)+": approver", fa.Approvers)
	if fa.Quorum != nil {
		a.Quorum = *fa.Quorum
		switch {
		case *fa.Quorum < 1:
			v.errorf(path+".quorum", "wave %q: quorum must be at least 1, got %d", wave, *fa.Quorum)
		case len(a.Groups()) == 0 && *fa.Quorum > distinctUsers(a.Users()):
			v.errorf(path+".quorum", "wave %q: quorum %d is more than the %d approvers listed", wave, *fa.Quorum, distinctUsers(a.Users()))
		}
	}
	for i, via := range fa.Via {
		switch {
		case via != ViaSlack && via != ViaCLI:
			v.errorf(fmt.Sprintf("%s.via[%d]", path, i), "wave %q: approval.via %q: use %s or %s", wave, via, ViaSlack, ViaCLI)
		case slices.Contains(fa.Via[:i], via):
			v.errorf(fmt.Sprintf("%s.via[%d]", path, i), "wave %q: approval.via lists %s twice", wave, via)
		}
	}
	a.Via = fa.Via
	if fa.RemindBefore != "" {
		a.RemindBefore = v.duration(path+".remindBefore", fa.RemindBefore, 0, false)
		if a.RemindBefore >= a.Timeout {
			v.errorf(path+".remindBefore", "wave %q: remindBefore %s must be shorter than the approval's timeout %s", wave, a.RemindBefore, a.Timeout)
		}
	}
	switch fa.OnTimeout {
	case "":
	case OnTimeoutReject, OnTimeoutPause:
		a.OnTimeout = fa.OnTimeout
	default:
		v.errorf(path+".onTimeout", "wave %q: onTimeout must be reject or pause, got %q", wave, fa.OnTimeout)
	}
	return a
}

// distinctUsers counts the distinct valid user IDs in ids.
func distinctUsers(ids []string) int {
	seen := map[string]bool{}
	for _, id := range ids {
		if userIDRE.MatchString(id) {
			seen[id] = true
		}
	}
	return len(seen)
}

// people reports entries that are neither Slack user IDs nor "@group" handles, and duplicates.
func (v *validator) people(path, what string, list []string) {
	seen := map[string]bool{}
	for i, s := range list {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case !ValidApprover(s):
			v.errorf(p, "%s %q is neither a Slack user ID (U012ABC) nor a user group (\"@sre-leads\")", what, s)
		case seen[s]:
			v.errorf(p, "%s %q is listed twice", what, s)
		}
		seen[s] = true
	}
}

var channelRE = regexp.MustCompile(`^(#[a-z0-9][a-z0-9._-]*|[CG][A-Z0-9]{2,})$`)

func (v *validator) slack(fs fileSlack) *SlackNotify {
	if !channelRE.MatchString(fs.Channel) {
		v.errorf("$.spec.notify.slack.channel", "notify.slack.channel must be a channel name like \"#deploys\" or a channel ID like C0123ABC, got %q", fs.Channel)
	}
	v.people("$.spec.notify.slack.operators", "operator", fs.Operators)
	return &SlackNotify{Channel: fs.Channel, Operators: fs.Operators}
}

func (v *validator) health(h fileHealth) Health {
	out := Health{
		ConvergenceTimeout: v.duration("$.spec.health.convergenceTimeout", h.ConvergenceTimeout, DefaultConvergenceTimeout, false),
		Interval:           v.duration("$.spec.health.interval", h.Interval, DefaultInterval, false),
		UnknownTimeout:     v.duration("$.spec.health.unknownTimeout", h.UnknownTimeout, DefaultUnknownTimeout, false),
		FailureThreshold:   DefaultFailureThreshold,
	}
	switch h.Watch {
	case "", WatchRollout:
	case WatchWave:
		out.Watch = WatchWave
	default:
		v.errorf("$.spec.health.watch", "health.watch must be rollout or wave, got %q", h.Watch)
	}
	if h.FailureThreshold != nil {
		if *h.FailureThreshold < 1 {
			v.errorf("$.spec.health.failureThreshold", "failureThreshold must be at least 1, got %d", *h.FailureThreshold)
		} else {
			out.FailureThreshold = *h.FailureThreshold
		}
	}
	if h.Offline != nil {
		out.Offline = v.offline(*h.Offline, out)
	}
	return out
}

// offline validates health.offline. Deferring needs a budget the plan states (maxDeferred):
// a default would let a wave pass with sites nobody saw; and after must be shorter than the
// convergence timeout, or no site would ever be Offline before it degraded.
func (v *validator) offline(o fileOffline, h Health) Offline {
	const path = "$.spec.health.offline"
	out := Offline{After: v.duration(path+".after", o.After, DefaultOfflineAfter, false),
		Probe: v.duration(path+".probe", o.Probe, DefaultOfflineProbe, false)}
	switch o.Action {
	case "", OfflineFail:
		out.Action = OfflineFail
	case OfflineDefer:
		out.Action = OfflineDefer
	default:
		v.errorf(path+".action", "health.offline.action must be defer or fail, got %q", o.Action)
	}
	if o.MaxDeferred != nil {
		out.MaxDeferred = v.budget(path+".maxDeferred", "maxDeferred", o.MaxDeferred)
	} else if out.Action == OfflineDefer {
		v.errorf(path, "health.offline.maxDeferred is required with action defer: how many of a wave's sites may be deferred, a count (2) or a percentage (\"10%%\")")
	}
	if out.After > 0 && out.After >= h.ConvergenceTimeout {
		v.errorf(path+".after", "health.offline.after (%s) must be shorter than health.convergenceTimeout (%s): a site would degrade before it counted as offline", out.After, h.ConvergenceTimeout)
	}
	return out
}

// checks validates the health checks, expanding their templates for every site so that a
// missing label or a URL that only breaks for one site is found before the rollout starts.
func (v *validator) checks(in []fileCheck, sites []Site, interval time.Duration) []Check {
	var out []Check
	names := map[string]bool{}
	for i, fc := range in {
		path := fmt.Sprintf("$.spec.health.checks[%d]", i)
		c := Check{Name: fc.Name}
		switch {
		case fc.Name == "":
			v.errorf(path, "check %d has no name", i+1)
		case !nameRE.MatchString(fc.Name):
			v.errorf(path+".name", "invalid check name %q: use lowercase letters, digits, '.', '_' and '-'", fc.Name)
		case names[fc.Name]:
			v.errorf(path+".name", "duplicate check name %q", fc.Name)
		}
		names[fc.Name] = true
		switch {
		case (fc.Prometheus == nil) == (fc.HTTP == nil):
			v.errorf(path, "check %q needs exactly one of prometheus and http", fc.Name)
		case fc.Prometheus != nil:
			fp, pp := fc.Prometheus, path+".prometheus"
			c.Prometheus = &PrometheusCheck{URL: fp.URL, Query: strings.TrimSpace(fp.Query), Min: fp.Min, Max: fp.Max,
				AllowEmpty: fp.AllowEmpty, Timeout: v.checkTimeout(pp+".timeout", fc.Name, fp.Timeout),
				StaleAfter: v.duration(pp+".staleAfter", fp.StaleAfter, DefaultStaleAfter(interval), true)}
			v.checkURL(pp+".url", fc.Name, fp.URL, sites)
			if c.Prometheus.Query == "" {
				v.errorf(pp, "check %q: prometheus.query is empty", fc.Name)
			} else {
				v.templates(pp+".query", fc.Name, fp.Query, sites)
			}
			if fp.Min == nil && fp.Max == nil {
				v.errorf(pp, "check %q: set max, min or both: a query without a threshold checks nothing", fc.Name)
			}
			if fp.Min != nil && fp.Max != nil && *fp.Min > *fp.Max {
				v.errorf(pp+".min", "check %q: min %g is above max %g", fc.Name, *fp.Min, *fp.Max)
			}
		default:
			fh, hp := fc.HTTP, path+".http"
			c.HTTP = &HTTPCheck{URL: fh.URL, Status: 200, Body: fh.Body,
				Timeout: v.checkTimeout(hp+".timeout", fc.Name, fh.Timeout)}
			v.checkURL(hp+".url", fc.Name, fh.URL, sites)
			if fh.Status != nil {
				if *fh.Status < 100 || *fh.Status > 599 {
					v.errorf(hp+".status", "check %q: status %d is not an HTTP status", fc.Name, *fh.Status)
				}
				c.HTTP.Status = *fh.Status
			}
			if fh.Body != "" {
				if _, err := regexp.Compile(fh.Body); err != nil {
					v.errorf(hp+".body", "check %q: body is not a regular expression: %v", fc.Name, err)
				}
			}
		}
		out = append(out, c)
	}
	return out
}

// checkTimeout parses a check's timeout: at most MaxCheckTimeout, so that a health round (one
// minute for the whole wave) can measure every site.
func (v *validator) checkTimeout(path, check, s string) time.Duration {
	d := v.duration(path, s, DefaultCheckTimeout, false)
	if d > MaxCheckTimeout {
		v.errorf(path, "check %q: timeout %s is longer than %s", check, d, MaxCheckTimeout)
		return MaxCheckTimeout
	}
	return d
}

// checkURL reports a check URL that is not an absolute http(s) URL for some site.
func (v *validator) checkURL(path, check, raw string, sites []Site) {
	if raw == "" {
		v.errorf(path, "check %q: url is empty", check)
		return
	}
	if err := CheckEnvNames(raw); err != nil {
		v.errorf(path, "check %q: %v", check, err)
		return
	}
	for _, s := range sites {
		expanded, err := Expand(raw, s)
		if err != nil {
			v.errorf(path, "check %q: %v", check, err)
			return
		}
		// {env.NAME} is filled in on the worker; any value stands in for it here.
		expanded, _, _ = ExpandEnv(expanded, func(string) string { return "env" })
		u, err := url.Parse(expanded)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errorf(path, "check %q: %q is not an http or https URL (for site %q)", check, RedactURL(expanded), s.Name)
			return
		}
		if literalPassword(raw) {
			v.errorf(path, "check %q: the URL carries a password; a password in the plan is in git and in every workflow history: set it in the worker's environment as "+CheckEnvPrefix+"NAME and write {env."+CheckEnvPrefix+"NAME} in its place", check)
			return
		}
	}
}

// userinfoRE finds the user:password part of a URL.
var userinfoRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://([^/?#@]*)@`)

// literalPassword reports whether a check URL carries a password written out, not {env.NAME}.
func literalPassword(raw string) bool {
	m := userinfoRE.FindStringSubmatch(raw)
	if m == nil {
		return false
	}
	_, password, ok := strings.Cut(m[1], ":")
	return ok && password != "" && envRE.FindString(password) != password
}

// templates reports a template in s that some site cannot fill.
func (v *validator) templates(path, check, s string, sites []Site) {
	if err := CheckEnvNames(s); err != nil {
		v.errorf(path, "check %q: %v", check, err)
		return
	}
	for _, site := range sites {
		if _, err := Expand(s, site); err != nil {
			v.errorf(path, "check %q: %v", check, err)
			return
		}
	}
}
