package deploy

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	fluxmeta "github.com/fluxcd/pkg/apis/meta"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/fleetwave/fleetwave/rollout"
)

// Kustomization is what fleetwave reads of a Flux Kustomization
// (kustomize.toolkit.fluxcd.io/v1) to judge a site.
type Kustomization struct {
	Namespace, Name       string
	Generation            int64
	ObservedGeneration    int64
	LastAppliedRevision   string
	LastAttemptedRevision string
	Conditions            []metav1.Condition
	// Suspended is .spec.suspend: Flux applies nothing while it is set.
	Suspended bool
	// Source is .spec.sourceRef, its namespace filled in.
	Source SourceRef
}

// SourceRef names a Kustomization's source: a GitRepository, OCIRepository or Bucket.
type SourceRef struct{ Kind, Namespace, Name string }

func (r SourceRef) String() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

// refusedRE finds the commit in source-controller's message for a commit it would not take
// ("signature verification of commit '<sha>' failed: ...").
var refusedRE = regexp.MustCompile(`commit '([0-9a-f]{40})'`)

// Refused tells whether a source (as the dynamic client returns it) refused a commit: its Ready
// condition is False and names the commit, as source-controller does when a signature does not
// verify. It returns the commit and the condition's message.
func Refused(u *unstructured.Unstructured) (commit, message string) {
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range raw {
		m, _ := c.(map[string]any)
		if m["type"] != fluxmeta.ReadyCondition || m["status"] != string(metav1.ConditionFalse) {
			continue
		}
		msg, _ := m["message"].(string)
		if sub := refusedRE.FindStringSubmatch(msg); sub != nil {
			reason, _ := m["reason"].(string)
			return sub[1], strings.TrimSpace(reason + ": " + msg)
		}
	}
	return "", ""
}

// refuse marks a site's state with what its source refused, when it refused a commit other than
// the one the site runs.
func refuse(st *rollout.SiteState, src SourceRef, u *unstructured.Unstructured) {
	commit, msg := Refused(u)
	if commit == "" || rollout.RevisionHash(st.Revision) == commit {
		return
	}
	st.SourceRefused = commit
	st.Message = fmt.Sprintf("%s refused commit %s: %s (Flux keeps applying %s)", src, rollout.Short(commit), msg, rollout.Short(rollout.RevisionHash(st.Revision)))
}

// kustomizationStatus is the part of .status fleetwave decodes.
type kustomizationStatus struct {
	ObservedGeneration    int64              `json:"observedGeneration"`
	LastAppliedRevision   string             `json:"lastAppliedRevision"`
	LastAttemptedRevision string             `json:"lastAttemptedRevision"`
	Conditions            []metav1.Condition `json:"conditions"`
}

// KustomizationFrom reads a Kustomization from an object as client-go's dynamic client
// returns it.
func KustomizationFrom(u *unstructured.Unstructured) (Kustomization, error) {
	k := Kustomization{Namespace: u.GetNamespace(), Name: u.GetName(), Generation: u.GetGeneration()}
	k.Suspended, _, _ = unstructured.NestedBool(u.Object, "spec", "suspend")
	k.Source.Kind, _, _ = unstructured.NestedString(u.Object, "spec", "sourceRef", "kind")
	k.Source.Name, _, _ = unstructured.NestedString(u.Object, "spec", "sourceRef", "name")
	k.Source.Namespace, _, _ = unstructured.NestedString(u.Object, "spec", "sourceRef", "namespace")
	if k.Source.Namespace == "" {
		k.Source.Namespace = k.Namespace
	}
	raw, found, err := unstructured.NestedMap(u.Object, "status")
	if err != nil {
		return k, fmt.Errorf("kustomization %s/%s: status: %w", k.Namespace, k.Name, err)
	}
	if !found {
		return k, nil
	}
	var st kustomizationStatus
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &st); err != nil {
		return k, fmt.Errorf("kustomization %s/%s: status: %w", k.Namespace, k.Name, err)
	}
	k.ObservedGeneration = st.ObservedGeneration
	k.LastAppliedRevision = st.LastAppliedRevision
	k.LastAttemptedRevision = st.LastAttemptedRevision
	k.Conditions = st.Conditions
	return k, nil
}

// State judges the Kustomization the way Flux does. It is Ready only when its Ready condition
// is True for the current generation and it is neither Stalled nor Reconciling (the rule of
// fluxcd/pkg/runtime's IsReady, without importing controller-runtime). A spec change Flux has
// not observed yet counts as Reconciling. Revision is the last applied revision; Attempted the
// last one Flux tried, so a failure at a new commit is seen before it is applied.
func (k Kustomization) State(site string, now time.Time) rollout.SiteState {
	st := rollout.SiteState{
		Site:       site,
		Reachable:  true,
		Revision:   k.LastAppliedRevision,
		Attempted:  k.LastAttemptedRevision,
		ObservedAt: now,
	}
	ready := apimeta.FindStatusCondition(k.Conditions, fluxmeta.ReadyCondition)
	stalled := apimeta.IsStatusConditionTrue(k.Conditions, fluxmeta.StalledCondition)
	// After a failed attempt Flux keeps Reconciling=True with reason ProgressingWithRetry and
	// Ready=False: it will try again, but this attempt failed, and that is what counts.
	rc := apimeta.FindStatusCondition(k.Conditions, fluxmeta.ReconcilingCondition)
	retrying := rc != nil && rc.Reason == fluxmeta.ProgressingWithRetryReason && ready != nil && ready.Status == metav1.ConditionFalse
	// A Kustomization waiting for one it depends on (dependsOn) has not failed: Flux applies it
	// once the dependency is Ready.
	waiting := ready != nil && ready.Status == metav1.ConditionFalse && ready.Reason == fluxmeta.DependencyNotReadyReason
	reconciling := (rc != nil && rc.Status == metav1.ConditionTrue && !retrying) || waiting ||
		k.ObservedGeneration != k.Generation || ready == nil || ready.Status == metav1.ConditionUnknown
	st.Stalled = stalled
	st.Suspended = k.Suspended
	st.Reconciling = reconciling && !stalled
	st.Ready = ready != nil && ready.Status == metav1.ConditionTrue && !stalled && !st.Reconciling
	switch {
	case stalled:
		c := apimeta.FindStatusCondition(k.Conditions, fluxmeta.StalledCondition)
		st.Message = fmt.Sprintf("%s: %s", c.Reason, strings.TrimSpace(c.Message))
	case ready != nil:
		st.Message = fmt.Sprintf("%s: %s", ready.Reason, strings.TrimSpace(ready.Message))
	default:
		st.Message = "no Ready condition yet"
	}
	return st
}
