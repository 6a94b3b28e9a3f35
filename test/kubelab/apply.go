package kubelab

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// crdFiles are the CustomResourceDefinitions of Flux source-controller and
// kustomize-controller v1.9.6, copied from config/crd/bases of their modules. Both controllers
// watch every kind they define, so all seven are installed.
//
//go:embed crds/*.yaml
var crdFiles embed.FS

// fieldManager is the server-side apply field manager of everything the lab applies.
const fieldManager = "kubelab"

// applier applies objects to one kube-apiserver with server-side apply. It finds the resource
// of each apiVersion and kind through the discovery endpoints, as kubectl does, so it applies
// any kind the server serves, including custom resources once their CRD is established.
type applier struct {
	dyn  dynamic.Interface
	http *http.Client
	host string
}

func newApplier(cfg *rest.Config) (*applier, error) {
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("create dynamic client: %w", err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("create HTTP client: %w", err)
	}
	return &applier{dyn: dyn, http: hc, host: strings.TrimSuffix(cfg.Host, "/")}, nil
}

// decodeYAML splits a multi-document YAML (or JSON) stream into objects, skipping empty
// documents.
func decodeYAML(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decode YAML document %d: %w", len(objs)+1, err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// crds returns the embedded Flux CRDs.
func crds() ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	err := fs.WalkDir(crdFiles, "crds", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := crdFiles.ReadFile(p)
		if err != nil {
			return err
		}
		o, err := decodeYAML(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path.Base(p), err)
		}
		objs = append(objs, o...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read embedded CRDs: %w", err)
	}
	return objs, nil
}

// resource returns the resource serving kind in group/version, and whether it is namespaced.
func (a *applier) resource(ctx context.Context, gvk schema.GroupVersionKind) (schema.GroupVersionResource, bool, error) {
	gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version}
	url := a.host + "/apis/" + gvk.Group + "/" + gvk.Version
	if gvk.Group == "" {
		url = a.host + "/api/" + gvk.Version
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return gvr, false, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return gvr, false, fmt.Errorf("discover %s: %w", gvk.GroupVersion(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return gvr, false, fmt.Errorf("discover %s: %s", gvk.GroupVersion(), resp.Status)
	}
	var list metav1.APIResourceList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return gvr, false, fmt.Errorf("discover %s: %w", gvk.GroupVersion(), err)
	}
	for _, r := range list.APIResources {
		if r.Kind == gvk.Kind && !strings.Contains(r.Name, "/") {
			gvr.Resource = r.Name
			return gvr, r.Namespaced, nil
		}
	}
	return gvr, false, fmt.Errorf("discover %s: no resource of kind %s", gvk.GroupVersion(), gvk.Kind)
}

// applyRetry is how long apply retries one object. Discovery can lag a moment behind a newly
// established CRD; an object the server rejects fails after this long.
const applyRetry = 15 * time.Second

// apply server-side applies objs in order, forcing conflicts: the lab owns these objects.
func (a *applier) apply(ctx context.Context, objs ...*unstructured.Unstructured) error {
	for _, o := range objs {
		if err := a.applyRetrying(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

func (a *applier) applyRetrying(ctx context.Context, o *unstructured.Unstructured) error {
	ctx, cancel := context.WithTimeout(ctx, applyRetry)
	defer cancel()
	var last error
	for {
		err := a.applyOne(ctx, o)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil || last == nil {
			last = err // keep the cause rather than the deadline that cut the last try short
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (a *applier) applyOne(ctx context.Context, o *unstructured.Unstructured) error {
	ri, what, err := a.target(ctx, o)
	if err != nil {
		return err
	}
	if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply %s: %w", what, err)
	}
	return nil
}

// target is the client of o's resource (in o's namespace when namespaced), and o's name for
// messages: "Kind namespace/name".
func (a *applier) target(ctx context.Context, o *unstructured.Unstructured) (dynamic.ResourceInterface, string, error) {
	what := o.GetKind() + " " + o.GetName()
	if o.GetNamespace() != "" {
		what = o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
	}
	gvr, namespaced, err := a.resource(ctx, o.GroupVersionKind())
	if err != nil {
		return nil, what, fmt.Errorf("apply %s: %w", what, err)
	}
	if namespaced {
		return a.dyn.Resource(gvr).Namespace(o.GetNamespace()), what, nil
	}
	return a.dyn.Resource(gvr), what, nil
}

// waitEstablished waits until every CRD in crds has the condition Established=True.
func (a *applier) waitEstablished(ctx context.Context, crds []*unstructured.Unstructured) error {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, c := range crds {
		for {
			got, err := a.dyn.Resource(gvr).Get(ctx, c.GetName(), metav1.GetOptions{})
			if err == nil && conditionStatus(got, "Established") == "True" {
				break
			}
			select {
			case <-ctx.Done():
				if err == nil {
					err = errors.New(conditionsText(got))
				}
				return fmt.Errorf("CRD %s not established: %w", c.GetName(), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// conditionStatus returns the status ("True", "False", "Unknown") of condition typ of o, or ""
// when o has no such condition.
func conditionStatus(o *unstructured.Unstructured, typ string) string {
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			s, _ := m["status"].(string)
			return s
		}
	}
	return ""
}

// conditionsText describes the conditions of o in one line, e.g.
// "Ready=False (ArtifactFailed: ...); Reconciling=True (...)", for error messages.
func conditionsText(o *unstructured.Unstructured) string {
	if o == nil {
		return "no object"
	}
	conds, _, _ := unstructured.NestedSlice(o.Object, "status", "conditions")
	if len(conds) == 0 {
		return "no conditions"
	}
	var parts []string
	for _, c := range conds {
		m, _ := c.(map[string]any)
		parts = append(parts, fmt.Sprintf("%v=%v (%v: %v)", m["type"], m["status"], m["reason"], m["message"]))
	}
	return strings.Join(parts, "; ")
}

// Apply server-side applies objs to the site as the admin, in order, with strict field
// validation (a field the server does not know is an error) and taking over fields another
// manager owns. With dryRun the server validates and admits each object without storing it.
func (s *Site) Apply(ctx context.Context, dryRun bool, objs ...*unstructured.Unstructured) error {
	a, err := newApplier(s.cfg)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: ptr(true), FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, o := range objs {
		ri, what, err := a.target(ctx, o)
		if err != nil {
			return err
		}
		data, err := json.Marshal(o.Object)
		if err != nil {
			return fmt.Errorf("apply %s: %w", what, err)
		}
		if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, opts); err != nil {
			return fmt.Errorf("apply %s: %w", what, err)
		}
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// DecodeYAML splits a multi-document YAML stream into objects.
func DecodeYAML(data []byte) ([]*unstructured.Unstructured, error) { return decodeYAML(data) }
