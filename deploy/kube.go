package deploy

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fleetwave/fleetwave/rollout"
)

// Defaults for a site without a cluster block (or with parts of it left out): the kubeconfig
// context named after the site, and the Kustomization `flux bootstrap` creates.
const (
	DefaultKustomization = "flux-system/flux-system"
	// InCluster as a site's context means the cluster fleetwave runs in (its service account).
	InCluster = "in-cluster"
)

// Client limits per context (Kube.QPS, Kube.Burst): a health round reads a context's sites in
// one list per namespace, but reconcile requests are a get and two patches per site, and a
// convergence round of a batch of a hundred sites on one cluster should not wait for a token
// bucket. An API server's own limits (--max-requests-inflight, 400 by default, and its priority
// and fairness) are far above this.
const (
	DefaultQPS   = 50
	DefaultBurst = 100
)

// ReconcileAnnotation is the annotation the Flux CLI sets to ask a controller to reconcile now.
const ReconcileAnnotation = "reconcile.fluxcd.io/requestedAt"

var kustomizationGVR = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}

// sourceResources maps the kinds a Kustomization's sourceRef may name to their resources.
var sourceResources = map[string]schema.GroupVersionResource{
	"GitRepository": {Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"},
	"OCIRepository": {Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "ocirepositories"},
	"Bucket":        {Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "buckets"},
}

// ErrUnreachable wraps a failure to reach a site's API server.
var ErrUnreachable = errors.New("unreachable")

// Kube is the Driver for real sites: it reads each site's Flux Kustomization through the
// site's Kubernetes API server, with one client per kubeconfig context.
type Kube struct {
	rules *clientcmd.ClientConfigLoadingRules
	// Timeout bounds every request to an API server (default 10s), so an unreachable site is
	// reported as such instead of stalling a health round.
	Timeout time.Duration
	// Now is the clock, for tests; nil means time.Now.
	Now func() time.Time
	// QPS and Burst bound the requests to each context's API server (client-go's token
	// bucket); 0 means DefaultQPS and DefaultBurst. client-go's own defaults (5 and 10) would
	// make the first convergence round of 50 sites, a get and two reconcile patches each,
	// take 30 seconds.
	QPS   float32
	Burst int

	mu      sync.Mutex
	clients map[string]dynamic.Interface
	// watchers are the clients for watches (Watch), without Timeout.
	watchers map[string]dynamic.Interface
}

// NewKube returns a driver reading kubeconfig, a list of files separated like PATH; empty
// means $KUBECONFIG (also a list) or ~/.kube/config, as kubectl does.
func NewKube(kubeconfig string) *Kube {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = ""
		rules.Precedence = filepath.SplitList(kubeconfig)
	}
	return &Kube{rules: rules, Timeout: 10 * time.Second, clients: map[string]dynamic.Interface{}, watchers: map[string]dynamic.Interface{}}
}

// Target returns the kubeconfig context and the Kustomization (namespace, name) of a site.
func Target(site rollout.Site) (kubeContext, namespace, name string) {
	kubeContext, ks := site.Name, DefaultKustomization
	if c := site.Cluster; c != nil {
		if c.Context != "" {
			kubeContext = c.Context
		}
		if c.Kustomization != "" {
			ks = c.Kustomization
		}
	}
	namespace, name, _ = strings.Cut(ks, "/")
	return kubeContext, namespace, name
}

// client returns the dynamic client of a kubeconfig context, made once, whose requests time
// out after Timeout.
func (k *Kube) client(kubeContext string) (dynamic.Interface, error) {
	timeout := k.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return k.dynamicClient(k.clients, kubeContext, timeout)
}

// dynamicClient returns cache's client of the context, making it when missing; a timeout of 0
// leaves requests without one (watches).
func (k *Kube) dynamicClient(cache map[string]dynamic.Interface, kubeContext string, timeout time.Duration) (dynamic.Interface, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := cache[kubeContext]; ok {
		return c, nil
	}
	cfg, err := k.restConfig(kubeContext)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = timeout
	cfg.UserAgent = "fleetwave"
	cfg.QPS, cfg.Burst = k.QPS, k.Burst
	if cfg.QPS <= 0 {
		cfg.QPS = DefaultQPS
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	c, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("context %q: %w", kubeContext, err)
	}
	cache[kubeContext] = c
	return c, nil
}

func (k *Kube) restConfig(kubeContext string) (*rest.Config, error) {
	if kubeContext == InCluster {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("context %q: %w", InCluster, err)
		}
		return cfg, nil
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(k.rules, &clientcmd.ConfigOverrides{CurrentContext: kubeContext})
	raw, err := loader.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	if _, ok := raw.Contexts[kubeContext]; !ok {
		return nil, fmt.Errorf("context %q not found in kubeconfig %s", kubeContext, k.describeFiles())
	}
	cfg, err := loader.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("context %q: %w", kubeContext, err)
	}
	return cfg, nil
}

func (k *Kube) describeFiles() string {
	if k.rules.ExplicitPath != "" {
		return k.rules.ExplicitPath
	}
	return strings.Join(k.rules.Precedence, string(filepath.ListSeparator))
}

// Observe reads the site's Kustomization and judges it (Kustomization.State). A site that
// cannot be read (API server down, Kustomization missing, access denied, a broken kubeconfig)
// is reported unreachable with the reason: Unknown, never Healthy.
func (k *Kube) Observe(ctx context.Context, site rollout.Site) (rollout.SiteState, error) {
	now := time.Now
	if k.Now != nil {
		now = k.Now
	}
	ks, err := k.kustomization(ctx, site)
	if err != nil {
		if ctx.Err() != nil {
			return rollout.SiteState{}, ctx.Err()
		}
		return rollout.SiteState{Site: site.Name, Message: err.Error(), ObservedAt: now()}, nil
	}
	return ks.State(site.Name, now()), nil
}

func (k *Kube) kustomization(ctx context.Context, site rollout.Site) (Kustomization, error) {
	kubeContext, ns, name := Target(site)
	c, err := k.client(kubeContext)
	if err != nil {
		return Kustomization{}, err
	}
	u, err := c.Resource(kustomizationGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Kustomization{}, describe(err, kubeContext, "Kustomization "+ns+"/"+name)
	}
	return KustomizationFrom(u)
}

// describe turns a client-go error into a message naming the context and the object; a
// network failure wraps ErrUnreachable.
func describe(err error, kubeContext, object string) error {
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("context %q: %s not found", kubeContext, object)
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return fmt.Errorf("context %q: reading %s: %s", kubeContext, object, apierrors.ReasonForError(err))
	case apierrors.IsTooManyRequests(err), apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err),
		apierrors.IsTimeout(err), apierrors.IsServerTimeout(err):
		// The API server (or a proxy in front of it) is in trouble: cannot tell, not wrong.
		return fmt.Errorf("context %q: %w", kubeContext, unreachableError{err})
	case apierrors.ReasonForError(err) != metav1.StatusReasonUnknown:
		return fmt.Errorf("context %q: %s: %w", kubeContext, object, err)
	}
	return fmt.Errorf("context %q: %w", kubeContext, unreachableError{err})
}

// unreachableError is a network failure talking to an API server; it matches ErrUnreachable.
type unreachableError struct{ err error }

func (e unreachableError) Error() string   { return "API server unreachable: " + e.err.Error() }
func (e unreachableError) Unwrap() []error { return []error{ErrUnreachable, e.err} }

// RequestReconcile asks Flux to reconcile the site's source and Kustomization now, the way
// `flux reconcile kustomization --with-source` does: it sets reconcile.fluxcd.io/requestedAt
// on both. It is the only write fleetwave makes to a cluster.
func (k *Kube) RequestReconcile(ctx context.Context, site rollout.Site) error {
	kubeContext, ns, name := Target(site)
	c, err := k.client(kubeContext)
	if err != nil {
		return err
	}
	u, err := c.Resource(kustomizationGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return describe(err, kubeContext, "Kustomization "+ns+"/"+name)
	}
	stamp := time.Now().Format(time.RFC3339Nano)
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, ReconcileAnnotation, stamp)
	kind, _, _ := unstructured.NestedString(u.Object, "spec", "sourceRef", "kind")
	srcName, _, _ := unstructured.NestedString(u.Object, "spec", "sourceRef", "name")
	srcNS, _, _ := unstructured.NestedString(u.Object, "spec", "sourceRef", "namespace")
	if srcNS == "" {
		srcNS = ns
	}
	if gvr, ok := sourceResources[kind]; ok && srcName != "" {
		if _, err := c.Resource(gvr).Namespace(srcNS).Patch(ctx, srcName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "fleetwave"}); err != nil {
			return describe(err, kubeContext, kind+" "+srcNS+"/"+srcName)
		}
	}
	if _, err := c.Resource(kustomizationGVR).Namespace(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "fleetwave"}); err != nil {
		return describe(err, kubeContext, "Kustomization "+ns+"/"+name)
	}
	return nil
}

// Validate checks that the site's context exists in the kubeconfig and that its Kustomization
// exists and can be read. A site that cannot be reached gives an error wrapping ErrUnreachable,
// so callers can tell "wrong" from "down right now".
// Configured checks that the kubeconfig has the site's context and that a client can be made
// from it, without a request: serve checks every site so at start, rather than at the first
// rollout.
func (k *Kube) Configured(site rollout.Site) error {
	kubeContext, _, _ := Target(site)
	if _, err := k.restConfig(kubeContext); err != nil {
		return &SiteError{Site: site.Name, Field: "cluster.context", Err: err}
	}
	return nil
}

func (k *Kube) Validate(ctx context.Context, site rollout.Site) error {
	kubeContext, _, _ := Target(site)
	if _, err := k.client(kubeContext); err != nil {
		return &SiteError{Site: site.Name, Field: "cluster.context", Err: err}
	}
	if _, err := k.kustomization(ctx, site); err != nil {
		return &SiteError{Site: site.Name, Field: "cluster.kustomization", Err: err}
	}
	return nil
}

// SiteError is a problem with one site's cluster settings.
type SiteError struct {
	Site, Field string
	Err         error
}

func (e *SiteError) Error() string {
	return fmt.Sprintf("site %s: %s: %v", e.Site, e.Field, e.Err)
}

func (e *SiteError) Unwrap() error { return e.Err }
