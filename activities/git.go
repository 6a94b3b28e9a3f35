package activities

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/fleetwave/fleetwave/deploy"
	"github.com/fleetwave/fleetwave/gitops"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/rollout/policy"
)

// Application error types the workflows branch on.
const (
	ErrTypeInvalidPlan    = "InvalidPlan"
	ErrTypeBranchNotFound = "BranchNotFound"
	ErrTypeRevertConflict = "RevertConflict"
	ErrTypeCommitNotFound = "CommitNotFound"
	ErrTypeInvalidPolicy  = "InvalidPolicy"
	ErrTypePushRejected   = "PushRejected"
	// ErrTypeNotOnSourceBranch: the commit is not reachable from the source branch's head, so
	// it was never merged (reviewed): it is never rolled out.
	ErrTypeNotOnSourceBranch = "NotOnSourceBranch"
)

// Repo is what the git activities need from the fleet repository.
type Repo interface {
	Refresh(ctx context.Context) error
	IsAncestor(ancestor, commit string) (bool, error)
	HoldsChanges(change, commit string) (bool, error)
	Commit(sha string) (gitops.CommitInfo, error)
	ReadFile(commit, path string) ([]byte, error)
	ReadDir(commit, dir string) (map[string][]byte, error)
	FS(commit string) (fs.FS, error)
	Promote(ctx context.Context, req gitops.PromoteRequest) ([]gitops.Change, error)
	Landed(ctx context.Context, req gitops.PromoteRequest) ([]gitops.Change, error)
	Revert(ctx context.Context, req gitops.RevertRequest) ([]gitops.Change, error)
	LastFleetwave(branch string) (gitops.CommitInfo, bool, error)
}

// Git runs the activities that read and write the fleet repository.
type Git struct {
	Repo Repo
	// Sites, when it can (deploy.Validator), checks every site of a loaded plan against the
	// site itself (kubeconfig context, Kustomization), so a wrong setting fails the rollout
	// before any branch is written.
	Sites deploy.Driver
	// Adapt, when set, changes every plan LoadPlan returns: a rehearsal scales its durations
	// and leaves out its health checks, which would reach real endpoints.
	Adapt func(*rollout.Plan) *rollout.Plan
	// SourceBranch is the branch the worker rolls out from: a commit not reachable from its
	// head is refused, whoever submitted it ("": no check, for tests of other things).
	SourceBranch string
	// Reserved are the branches no site's branch may be (the source branch the worker rolls
	// out from, its evidence branch): a plan whose site would be promoted onto one is invalid.
	Reserved []string
}

// LoadPlanInput names the commit whose plan to load.
type LoadPlanInput struct {
	Commit string
}

// LoadPlanResult is the validated plan at the commit, with the commit's description and the
// fleet's Rego policies at that commit.
type LoadPlanResult struct {
	Plan     *rollout.Plan
	Commit   string
	Subject  string
	Author   string               `json:",omitempty"`
	Message  string               `json:",omitempty"`
	Policies []rollout.PolicyFile `json:",omitempty"`
	// PlanBlob is the git blob hash of the plan file at the commit (`git rev-parse
	// <commit>:fleetwave.yaml`), for the rollout's report.
	PlanBlob string `json:",omitempty"`
	// Simulated is true when this worker's sites are a simulated fleet (deploy.Simulator).
	Simulated bool `json:",omitempty"`
}

// ReadPlan reads and validates the plan at commit in repo, with the site files it names
// (spec.siteFiles, read at that same commit); name names the plan file in messages. A missing
// plan gives an error wrapping gitops.ErrFileNotFound, an invalid one a *rollout.PlanError.
func ReadPlan(repo interface {
	ReadFile(commit, path string) ([]byte, error)
	FS(commit string) (fs.FS, error)
}, commit, name string) (*rollout.Plan, error) {
	data, err := repo.ReadFile(commit, rollout.PlanFile)
	if err != nil {
		return nil, err
	}
	tree, err := repo.FS(commit)
	if err != nil {
		return nil, err
	}
	return rollout.ParsePlanFS(name, data, tree)
}

// LoadPlan reads and validates fleetwave.yaml at the commit. An invalid or missing plan is a
// non-retryable InvalidPlan error whose message carries file:line:col positions.
func (g *Git) LoadPlan(ctx context.Context, in LoadPlanInput) (LoadPlanResult, error) {
	defer keepAlive(ctx)()
	if err := g.Repo.Refresh(ctx); err != nil {
		return LoadPlanResult{}, fmt.Errorf("load plan at %s: %w", rollout.Short(in.Commit), err)
	}
	info, err := g.Repo.Commit(in.Commit)
	if errors.Is(err, gitops.ErrCommitNotFound) {
		return LoadPlanResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("commit %s is not in the fleet repository", in.Commit), ErrTypeCommitNotFound, err)
	}
	if err != nil {
		return LoadPlanResult{}, err
	}
	if why, err := g.offSource(info.SHA); err != nil {
		return LoadPlanResult{}, err
	} else if why != "" {
		return LoadPlanResult{}, temporal.NewNonRetryableApplicationError(why, ErrTypeNotOnSourceBranch, nil)
	}
	data, err := g.Repo.ReadFile(info.SHA, rollout.PlanFile)
	if errors.Is(err, gitops.ErrFileNotFound) {
		return LoadPlanResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s: not found at commit %s", rollout.PlanFile, rollout.Short(info.SHA)), ErrTypeInvalidPlan, err)
	}
	if err != nil {
		return LoadPlanResult{}, err
	}
	tree, err := g.Repo.FS(info.SHA)
	if err != nil {
		return LoadPlanResult{}, err
	}
	plan, err := rollout.ParsePlanFS(rollout.PlanFile, data, tree)
	if err != nil {
		return LoadPlanResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidPlan, nil)
	}
	if err := plan.CheckBranches(g.Reserved...); err != nil {
		return LoadPlanResult{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", rollout.PlanFile, err), ErrTypeInvalidPlan, nil)
	}
	if v, ok := g.Sites.(deploy.Validator); ok {
		if err := ValidateSites(ctx, v, plan); err != nil {
			return LoadPlanResult{}, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("%s: %v", rollout.PlanFile, err), ErrTypeInvalidPlan, nil)
		}
	}
	files, err := LoadPolicies(g.Repo, info.SHA)
	if err != nil {
		return LoadPlanResult{}, err
	}
	if len(files) > 0 {
		if _, err := policy.Compile(ctx, files); err != nil {
			return LoadPlanResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeInvalidPolicy, nil)
		}
	}
	if g.Adapt != nil {
		plan = g.Adapt(plan)
	}
	sim, _ := g.Sites.(deploy.Simulator)
	return LoadPlanResult{Plan: plan, Commit: info.SHA, Subject: info.Subject, Author: info.Author, Message: info.Message, Policies: files,
		PlanBlob: gitops.BlobHash(data), Simulated: sim != nil && sim.Simulated()}, nil
}

// offSource says why commit may not be rolled out when it is not reachable from the head of the
// source branch ("" when it is, or when the worker checks no branch). Only what was merged there
// ships: a commit pushed to another branch, or named by hand, was never reviewed for the fleet.
func (g *Git) offSource(commit string) (string, error) {
	if g.SourceBranch == "" {
		return "", nil
	}
	head, err := g.Repo.Commit(g.SourceBranch)
	if err != nil {
		return "", fmt.Errorf("read the source branch %s: %w", g.SourceBranch, gitError(err))
	}
	if head.SHA == commit {
		return "", nil
	}
	on, err := g.Repo.IsAncestor(commit, head.SHA)
	if err != nil {
		return "", fmt.Errorf("is %s on %s: %w", rollout.Short(commit), g.SourceBranch, err)
	}
	if !on {
		return fmt.Sprintf("commit %s is not on the source branch %s (not reachable from its head %s): only commits merged there are rolled out",
			rollout.Short(commit), g.SourceBranch, rollout.Short(head.SHA)), nil
	}
	return "", nil
}

// LoadPolicies reads the Rego files under rollout.PolicyDir at the commit, sorted by path.
func LoadPolicies(repo Repo, commit string) ([]rollout.PolicyFile, error) {
	all, err := repo.ReadDir(commit, rollout.PolicyDir)
	if err != nil {
		return nil, err
	}
	var files []rollout.PolicyFile
	for path, data := range all {
		if policy.IsPolicyFile(path) {
			files = append(files, rollout.PolicyFile{Path: path, Source: string(data)})
		}
	}
	slices.SortFunc(files, func(a, b rollout.PolicyFile) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}

// ValidateSites checks every site of the plan with v and returns every problem found, one per
// line. A site that is unreachable right now is not a problem of the plan: it is logged, and
// the wave judges it (Unknown) when its turn comes.
func ValidateSites(ctx context.Context, v deploy.Validator, plan *rollout.Plan) error {
	// Sites that cannot answer before the activity's deadline count as unreachable.
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl.Add(-deadlineMargin))
		defer cancel()
	}
	errs := make([]error, len(plan.Sites))
	var wg sync.WaitGroup
	slots := make(chan struct{}, validateParallel)
	for i, site := range plan.Sites {
		wg.Go(func() {
			slots <- struct{}{}
			defer func() { <-slots }()
			errs[i] = v.Validate(ctx, site)
			if activity.IsActivity(ctx) {
				activity.RecordHeartbeat(ctx, site.Name)
			}
		})
	}
	wg.Wait()
	var problems []string
	for i, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, deploy.ErrUnreachable):
			if activity.IsActivity(ctx) {
				activity.GetLogger(ctx).Warn("site unreachable while validating the plan", "site", plan.Sites[i].Name, "error", err)
			}
		default:
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// validateParallel is how many sites are checked at once when a plan is loaded.
const validateParallel = 16

// Target is one site and its site branch, as the git activities take them.
type Target = gitops.Target

// PromoteInput asks for promotion commits of Source on the targets' site branches.
type PromoteInput struct {
	Rollout, Wave, Source string
	Targets               []Target
	// SkipMissing: a target whose branch does not exist is a Change with a Problem, and the
	// others are promoted (gitops.PromoteRequest.SkipMissing).
	SkipMissing bool `json:",omitempty"`
}

// Change is what a promotion or revert did to one site branch.
type Change = gitops.Change

// ChangeResult lists what happened to each site branch.
type ChangeResult struct {
	Changes []Change
}

// Promote writes the promotion commits of one batch in one push. It is idempotent: a retry
// after a lost response finds the commits already there and writes nothing.
//
// An abort cancels it. Between attempts that takes effect at once; a push under way is not cut
// short (it runs within the attempt's deadline), so that what it wrote is known: the activity
// then completes with its changes, or the workflow reads them with Landed.
func (g *Git) Promote(ctx context.Context, in PromoteInput) (ChangeResult, error) {
	defer keepAlive(ctx)()
	pctx, cancel := uncancelled(ctx)
	defer cancel()
	changes, err := g.Repo.Promote(pctx, gitops.PromoteRequest{Rollout: in.Rollout, Wave: in.Wave, Source: in.Source, Targets: in.Targets, SkipMissing: in.SkipMissing})
	if err != nil {
		return ChangeResult{}, gitError(err)
	}
	for _, c := range changes {
		activity.GetLogger(ctx).Info("promoted", "rollout", in.Rollout, "wave", in.Wave, "site", c.Site, "revision", c.Commit, "created", c.Created)
	}
	return ChangeResult{Changes: changes}, nil
}

// Landed reads which targets' branches hold the rollout's promotion of Source, writing nothing:
// the workflow asks after a cancelled (or failed) promotion.
func (g *Git) Landed(ctx context.Context, in PromoteInput) (ChangeResult, error) {
	defer keepAlive(ctx)()
	changes, err := g.Repo.Landed(ctx, gitops.PromoteRequest{Rollout: in.Rollout, Wave: in.Wave, Source: in.Source, Targets: in.Targets})
	if err != nil {
		return ChangeResult{}, gitError(err)
	}
	return ChangeResult{Changes: changes}, nil
}

// uncancelled is ctx without its cancellation but with its deadline: a push that started
// finishes (or times out) even when the activity is cancelled.
func uncancelled(ctx context.Context) (context.Context, context.CancelFunc) {
	out := context.WithoutCancel(ctx)
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(out, dl)
	}
	return context.WithCancel(out)
}

// RevertInput asks for revert commits of the rollout's promotions on the targets' branches.
type RevertInput struct {
	Rollout, Reason string
	Targets         []Target
}

// Revert writes git revert commits of the rollout's promotions in one push; idempotent too.
func (g *Git) Revert(ctx context.Context, in RevertInput) (ChangeResult, error) {
	defer keepAlive(ctx)()
	changes, err := g.Repo.Revert(ctx, gitops.RevertRequest{Rollout: in.Rollout, Reason: in.Reason, Targets: in.Targets})
	if err != nil {
		return ChangeResult{}, gitError(err)
	}
	for _, c := range changes {
		activity.GetLogger(ctx).Info("reverted", "rollout", in.Rollout, "site", c.Site, "revision", c.Commit, "created", c.Created)
	}
	return ChangeResult{Changes: changes}, nil
}

// heartbeatEvery is how often a git activity tells Temporal its worker is alive while a fetch
// or a push runs; with the HeartbeatTimeout of the workflows' git options, an attempt whose
// worker died (kill -9, a lost node) is retried elsewhere within seconds instead of after its
// whole StartToClose timeout.
const heartbeatEvery = 3 * time.Second

// keepAlive heartbeats the activity until the returned stop is called, also after the activity
// was cancelled, so that a push that goes on after an abort is not timed out for silence;
// outside an activity (a direct call) it does nothing.
func keepAlive(ctx context.Context) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	activity.RecordHeartbeat(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(heartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}

// gitError marks the failures a retry cannot fix as non-retryable; the rest (an unreachable
// server, a lost race after every attempt) are retried with backoff by Temporal.
func gitError(err error) error {
	switch {
	case errors.Is(err, gitops.ErrBranchNotFound):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeBranchNotFound, err)
	case errors.Is(err, gitops.ErrRevertConflict):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeRevertConflict, err)
	case errors.Is(err, gitops.ErrPushRejected):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypePushRejected, err)
	case errors.Is(err, gitops.ErrCommitNotFound):
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeCommitNotFound, err)
	}
	return err
}

// HeadInput names a branch.
type HeadInput struct {
	Branch string
}

// HeadResult is a branch's head commit.
type HeadResult struct {
	Commit string
}

// Head fetches and returns the head of a branch; the fleet workflow polls it for repos that
// send no push events.
func (g *Git) Head(ctx context.Context, in HeadInput) (HeadResult, error) {
	if err := g.Repo.Refresh(ctx); err != nil {
		return HeadResult{}, fmt.Errorf("read branch %s: %w", in.Branch, err)
	}
	info, err := g.Repo.Commit(in.Branch)
	if err != nil {
		return HeadResult{}, gitError(err)
	}
	return HeadResult{Commit: info.SHA}, nil
}

// InspectInput asks about a commit submitted to a fleet, relative to the commits the fleet
// already has in hand (the running one and those queued).
type InspectInput struct {
	Commit string
	Known  []string
	// Done is the commit of the fleet's last successful rollout: that commit and every one
	// before it are stale (rolling one out again would be a silent downgrade).
	Done string `json:",omitempty"`
}

// InspectResult says how the fleet should take a submitted commit.
type InspectResult struct {
	// OnNewCommit is the commit's plan policy; supersede when the plan is invalid (its rollout
	// then fails on its own, before writing anything).
	OnNewCommit string
	// Stale names a known commit that already contains this one: a late or redelivered push
	// event must not supersede newer work.
	Stale   string // Refused says why the commit is never rolled out: it is not on the source branch.
	Refused string `json:",omitempty"`
}

// Inspect reads the commit's onNewCommit policy and whether it is older than a known commit.
func (g *Git) Inspect(ctx context.Context, in InspectInput) (InspectResult, error) {
	defer keepAlive(ctx)()
	res := InspectResult{OnNewCommit: rollout.OnNewCommitSupersede}
	if err := g.Repo.Refresh(ctx); err != nil {
		return res, fmt.Errorf("inspect %s: %w", rollout.Short(in.Commit), err)
	}
	if _, err := g.Repo.Commit(in.Commit); err != nil {
		return res, gitError(err)
	}
	why, err := g.offSource(in.Commit)
	if err != nil {
		return res, err
	}
	if why != "" {
		res.Refused = why
		return res, nil
	}
	if in.Done != "" {
		if in.Commit == in.Done {
			res.Stale = in.Done
			return res, nil
		}
		if older, err := g.Repo.IsAncestor(in.Commit, in.Done); err == nil && older {
			res.Stale = in.Done
			return res, nil
		}
	}
	for _, k := range in.Known {
		if k == "" || k == in.Commit {
			continue
		}
		older, err := g.Repo.IsAncestor(in.Commit, k)
		if err != nil {
			continue // a known commit that vanished (force-pushed away) says nothing
		}
		if older {
			res.Stale = k
			return res, nil
		}
	}
	if plan, err := ReadPlan(g.Repo, in.Commit, rollout.PlanFile); err == nil {
		res.OnNewCommit = plan.OnNewCommit
	}
	return res, nil
}

// DeployedResult is the source commit the whole fleet runs, "" when that cannot be told.
type DeployedResult struct {
	Commit string `json:",omitempty"`
}

// Deployed reads, from the trailers of every site branch's head, the source commit the whole
// fleet runs: a coordinator that starts afresh, with no succeeded rollout left in Temporal's
// visibility store (past its retention), takes it as its last success, so no older commit
// ships again. It answers "" unless every site of the plan at the source branch's head runs a
// promotion (not a revert) of one same commit of the source branch.
func (g *Git) Deployed(ctx context.Context) (DeployedResult, error) {
	defer keepAlive(ctx)()
	if g.SourceBranch == "" {
		return DeployedResult{}, nil
	}
	if err := g.Repo.Refresh(ctx); err != nil {
		return DeployedResult{}, fmt.Errorf("read what the fleet runs: %w", err)
	}
	head, err := g.Repo.Commit(g.SourceBranch)
	if err != nil {
		return DeployedResult{}, gitError(err)
	}
	plan, err := ReadPlan(g.Repo, head.SHA, rollout.PlanFile)
	if err != nil {
		return DeployedResult{}, nil
	}
	source := ""
	for _, s := range plan.Sites {
		info, err := g.Repo.Commit(plan.SiteBranchFor(s.Name))
		if err != nil {
			return DeployedResult{}, nil // a site without its branch runs nothing of ours
		}
		promoted := info.Trailers[gitops.TrailerSource]
		switch {
		case promoted == "" || info.Trailers[gitops.TrailerReason] != "":
			return DeployedResult{}, nil // not a promotion, or a revert
		case source == "":
			source = promoted
		case promoted != source:
			return DeployedResult{}, nil // the fleet runs several commits
		}
	}
	if source == "" {
		return DeployedResult{}, nil
	}
	if on, err := g.Repo.IsAncestor(source, head.SHA); err != nil || !on {
		return DeployedResult{}, nil
	}
	return DeployedResult{Commit: source}, nil
}

// OwnersInput lists site branches to ask who put them where they are.
type OwnersInput struct {
	Targets []Target
}

// Owner is the rollout whose commit (a promotion, or a revert when Revert) last moved a site's
// branch; Rollout is "" when fleetwave never wrote there.
type Owner struct {
	Site    string
	Rollout string `json:",omitempty"`
	Revert  bool   `json:",omitempty"`
}

// OwnersResult holds one owner per target, in order.
type OwnersResult struct {
	Owners []Owner
}

// Owners reads, for each site branch, the latest commit fleetwave wrote there: the rollout that
// put the site where it is, and whether that commit was a revert. A rollback of an ended rollout
// reverts only the sites its promotion still holds, and names the ones a later rollout moved
// on.
func (g *Git) Owners(ctx context.Context, in OwnersInput) (OwnersResult, error) {
	defer keepAlive(ctx)()
	if err := g.Repo.Refresh(ctx); err != nil {
		return OwnersResult{}, fmt.Errorf("read the site branches: %w", err)
	}
	out := OwnersResult{Owners: make([]Owner, len(in.Targets))}
	for i, t := range in.Targets {
		out.Owners[i].Site = t.Site
		info, found, err := g.Repo.LastFleetwave(t.Branch)
		switch {
		case errors.Is(err, gitops.ErrBranchNotFound):
			continue
		case err != nil:
			return OwnersResult{}, err
		case found:
			out.Owners[i].Rollout = info.Trailers[gitops.TrailerRollout]
			out.Owners[i].Revert = info.Trailers[gitops.TrailerSource] == "" || info.Trailers[gitops.TrailerReason] != ""
		}
	}
	return out, nil
}
