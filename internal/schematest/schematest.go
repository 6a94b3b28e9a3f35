// Package schematest checks fleetwave's JSON outputs against their documented schemas
// (docs/schemas/v1alpha1.json) in tests.
package schematest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// File is the schema file, found from this package's source.
func File() string {
	_, here, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(here), "..", "..", "docs", "schemas", "v1alpha1.json")
}

var (
	once    sync.Once
	schemas map[string]*jsonschema.Schema
	doc     map[string]any
	loadErr error
)

func load() {
	data, err := os.ReadFile(File())
	if err != nil {
		loadErr = err
		return
	}
	root, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		loadErr = err
		return
	}
	doc, _ = root.(map[string]any)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(File(), root); err != nil {
		loadErr = err
		return
	}
	schemas = map[string]*jsonschema.Schema{}
	defs, _ := doc["$defs"].(map[string]any)
	for name := range defs {
		s, err := c.Compile(File() + "#/$defs/" + name)
		if err != nil {
			loadErr = fmt.Errorf("compile %s: %w", name, err)
			return
		}
		schemas[name] = s
	}
}

// Validate checks data against the schema of kind (a $defs name: RolloutStatus, Report...).
func Validate(kind string, data []byte) error {
	once.Do(load)
	if loadErr != nil {
		return loadErr
	}
	s := schemas[kind]
	if s == nil {
		return fmt.Errorf("no schema for %q in %s", kind, File())
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return s.Validate(v)
}

// Check fails t when data does not follow the schema of kind.
func Check(t testing.TB, kind string, data []byte) {
	t.Helper()
	if err := Validate(kind, data); err != nil {
		t.Errorf("%s does not follow docs/schemas/v1alpha1.json#/$defs/%s: %v\n%s", kind, kind, err, data)
	}
}

// Missing lists the properties the schema of kind documents (nested ones as a.b[].c) that none
// of the instances has: a documented field no output writes.
func Missing(kind string, instances ...[]byte) ([]string, error) {
	once.Do(load)
	if loadErr != nil {
		return nil, loadErr
	}
	seen := map[string]bool{}
	for _, data := range instances {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, err
		}
		paths(v, "", seen)
	}
	var want []string
	documented(ref(kind), "", map[string]bool{}, &want)
	var out []string
	for _, p := range want {
		if !seen[p] {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out, nil
}

func ref(name string) map[string]any {
	defs, _ := doc["$defs"].(map[string]any)
	s, _ := defs[name].(map[string]any)
	return s
}

// paths records every property path of v.
func paths(v any, at string, seen map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := strings.TrimPrefix(at+"."+k, ".")
			seen[p] = true
			paths(e, p, seen)
		}
	case []any:
		for _, e := range x {
			paths(e, at+"[]", seen)
		}
	}
}

// documented lists the property paths of schema s; stack stops at recursion.
func documented(s map[string]any, at string, stack map[string]bool, out *[]string) {
	if r, ok := s["$ref"].(string); ok {
		name := strings.TrimPrefix(r, "#/$defs/")
		if stack[name] {
			return
		}
		stack[name] = true
		documented(ref(name), at, stack, out)
		delete(stack, name)
	}
	if props, ok := s["properties"].(map[string]any); ok {
		for k, p := range props {
			path := strings.TrimPrefix(at+"."+k, ".")
			*out = append(*out, path)
			if ps, ok := p.(map[string]any); ok {
				documented(ps, path, stack, out)
			}
		}
	}
	if items, ok := s["items"].(map[string]any); ok {
		documented(items, at+"[]", stack, out)
	}
}
