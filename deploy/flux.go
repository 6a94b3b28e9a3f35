package deploy

import (
	"fmt"
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
	reconciling := (rc != nil && rc.Status == metav1.ConditionTrue && !retrying) ||
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
