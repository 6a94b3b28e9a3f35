// Package policy compiles and evaluates a fleet's Rego policies (every .rego file under
// .fleetwave/policies) with the OPA Go library, Rego v1.
//
// Policies are in package fleetwave.policy and may define two rules over the documented input
// (rollout.PolicyInput):
//
//	deny contains msg if { ... }          # a set of strings: the wave must not start
//	wait_until := "2026-11-30T08:00:00Z"  # an RFC 3339 time (or a set of them): not before then
//
// A rule of the wrong type is an error, never an allow; so is an evaluation that runs past its
// time limit. Files named *_test.rego may use any package: they hold the policies' unit tests
// (`fleetwave policy test`).
package policy

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/fleetwave/fleetwave/rollout"
)

// Package is the Rego package policies are written in.
const Package = "fleetwave.policy"

// EvalTimeout bounds one evaluation; past it the policy fails closed.
const EvalTimeout = 5 * time.Second

// evalTimeout is EvalTimeout; tests shorten it.
var evalTimeout = EvalTimeout

// MaxMemory bounds how far the worker's heap may grow during one evaluation, in bytes; past it
// the evaluation stops and the policy fails closed. A policy can allocate gigabytes within its
// time limit (net.cidr_expand of a /4, a comprehension of long strings), and an evaluation the
// worker does not survive would run again after every restart.
const MaxMemory = 256 << 20

// maxMemory is MaxMemory; tests lower it.
var maxMemory uint64 = MaxMemory

// evalOne makes evaluations take turns in the process, so that the heap's growth during one is
// its own.
var evalOne sync.Mutex

// Set is a compiled set of policy files, ready to evaluate.
type Set struct {
	Modules map[string]*ast.Module
	deny    rego.PreparedEvalQuery
	wait    rego.PreparedEvalQuery
}

// Unsafe are the builtins policies may not call: they reach the network, the worker's files or
// its environment (policies are written by anyone who can commit to the fleet repo, and run on
// the worker, next to its git credentials and kubeconfigs). The JSON schema builtins follow a
// schema's $ref to any http(s) URL or file:// path.
var Unsafe = []string{"http.send", "net.lookup_ip_addr", "opa.runtime", "json.match_schema", "json.verify_schema"}

// capabilities are OPA's builtins without the Unsafe ones.
var capabilities = func() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	c.Builtins = slices.DeleteFunc(c.Builtins, func(b *ast.Builtin) bool { return slices.Contains(Unsafe, b.Name) })
	return c
}()

// NewCompiler returns a Rego compiler restricted to the safe builtins, for policies and their
// tests alike.
func NewCompiler() *ast.Compiler {
	return ast.NewCompiler().WithCapabilities(capabilities)
}

// IsPolicyFile reports whether a path of the policy folder is a Rego file.
func IsPolicyFile(p string) bool { return path.Ext(p) == ".rego" }

// Error lists compile problems, each "file:line:col: message".
type Error struct{ Problems []string }

func (e *Error) Error() string { return strings.Join(e.Problems, "\n") }

// Parse parses Rego v1 files and checks their packages.
func Parse(files []rollout.PolicyFile) (map[string]*ast.Module, error) {
	mods := map[string]*ast.Module{}
	var problems []string
	for _, f := range files {
		m, err := ast.ParseModuleWithOpts(f.Path, f.Source, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			problems = append(problems, describe(err)...)
			continue
		}
		pkg := strings.TrimPrefix(m.Package.Path.String(), "data.")
		if !strings.HasSuffix(f.Path, "_test.rego") && pkg != Package {
			problems = append(problems, fmt.Sprintf("%s:%d:%d: package %s: policies must be in package %s (tests, in *_test.rego files, may use another)",
				f.Path, m.Package.Location.Row, m.Package.Location.Col, pkg, Package))
			continue
		}
		mods[f.Path] = m
	}
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	return mods, nil
}

// Compile parses and compiles the files and prepares the deny and wait_until queries.
func Compile(ctx context.Context, files []rollout.PolicyFile) (*Set, error) {
	mods, err := Parse(files)
	if err != nil {
		return nil, err
	}
	c := NewCompiler()
	c.Compile(mods)
	if c.Failed() {
		return nil, &Error{Problems: describe(c.Errors)}
	}
	s := &Set{Modules: mods}
	prepare := func(rule string) (rego.PreparedEvalQuery, error) {
		return rego.New(rego.Query("data."+Package+"."+rule), rego.Compiler(c), rego.Capabilities(capabilities),
			rego.StrictBuiltinErrors(true)).PrepareForEval(ctx)
	}
	if s.deny, err = prepare("deny"); err != nil {
		return nil, &Error{Problems: describe(err)}
	}
	if s.wait, err = prepare("wait_until"); err != nil {
		return nil, &Error{Problems: describe(err)}
	}
	return s, nil
}

// describe turns OPA errors into "file:line:col: message" lines.
func describe(err error) []string {
	var errs ast.Errors
	if errors.As(err, &errs) {
		out := make([]string, 0, len(errs))
		for _, e := range errs {
			if e.Location != nil {
				out = append(out, fmt.Sprintf("%s:%d:%d: %s", e.Location.File, e.Location.Row, e.Location.Col, e.Message))
			} else {
				out = append(out, e.Message)
			}
		}
		return out
	}
	return []string{err.Error()}
}

// Eval evaluates the policies for one wave: the denial messages (sorted) and the time to wait
// until (zero when none). An error (a rule of the wrong type, a builtin failing, the time
// limit) means the policies could not decide: callers must not treat it as allow.
func (s *Set) Eval(ctx context.Context, in rollout.PolicyInput) ([]string, time.Time, error) {
	evalOne.Lock()
	defer evalOne.Unlock()
	ctx, cancel := context.WithTimeout(ctx, evalTimeout)
	defer cancel()
	ctx, unwatch := watchMemory(ctx, maxMemory)
	defer unwatch()
	input, err := inputValue(in)
	if err != nil {
		return nil, time.Time{}, err
	}
	// time.now_ns() is the workflow's time, like input.now, never the worker's clock.
	denyRS, err := s.deny.Eval(ctx, rego.EvalParsedInput(input), rego.EvalTime(in.Now))
	if err != nil {
		return nil, time.Time{}, evalError("deny", ctx, err)
	}
	deny, err := stringsOf("deny", denyRS)
	if err != nil {
		return nil, time.Time{}, err
	}
	waitRS, err := s.wait.Eval(ctx, rego.EvalParsedInput(input), rego.EvalTime(in.Now))
	if err != nil {
		return nil, time.Time{}, evalError("wait_until", ctx, err)
	}
	waits, err := stringsOf("wait_until", waitRS)
	if err != nil {
		return nil, time.Time{}, err
	}
	var until time.Time
	for _, w := range waits {
		t, err := time.Parse(time.RFC3339, w)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("wait_until must be an RFC 3339 time like 2026-11-30T08:00:00Z, got %q", w)
		}
		if t.After(until) {
			until = t
		}
	}
	slices.Sort(deny)
	return deny, until, nil
}

func evalError(rule string, ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errMemory) {
		return fmt.Errorf("evaluating %s: %w", rule, cause)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("evaluating %s took longer than %s: %w", rule, evalTimeout, ctx.Err())
	}
	return fmt.Errorf("evaluating %s: %s", rule, strings.Join(describe(err), "; "))
}

// inputValue converts the input through JSON, so Rego sees the documented field names.
func inputValue(in rollout.PolicyInput) (ast.Value, error) {
	data, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	return ast.ValueFromReader(strings.NewReader(string(data)))
}

// stringsOf reads a rule that must be a string, or a set or array of strings; undefined is none.
func stringsOf(rule string, rs rego.ResultSet) ([]string, error) {
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, nil
	}
	switch v := rs[0].Expressions[0].Value.(type) {
	case string:
		if rule == "deny" {
			return nil, fmt.Errorf("deny must be a set of strings, got the string %q (write `deny contains msg if ...`)", v)
		}
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s must hold strings, got %s", rule, typeName(e))
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%s must be a set of strings, got %s", rule, typeName(v))
	}
}

func typeName(v any) string {
	switch v.(type) {
	case bool:
		return "a boolean"
	case json.Number, float64, int:
		return "a number"
	case map[string]any:
		return "an object"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// cache keeps compiled sets by content, so a worker compiles a fleet's policies once.
var cache = struct {
	sync.Mutex
	sets map[[32]byte]*Set
}{sets: map[[32]byte]*Set{}}

// maxCached bounds the cache; it is emptied when full.
const maxCached = 64

// Cached compiles the files, or returns the set compiled before for the same files.
func Cached(ctx context.Context, files []rollout.PolicyFile) (*Set, error) {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%d:%s%d:%s", len(f.Path), f.Path, len(f.Source), f.Source)
	}
	var key [32]byte
	copy(key[:], h.Sum(nil))
	cache.Lock()
	s, ok := cache.sets[key]
	cache.Unlock()
	if ok {
		return s, nil
	}
	s, err := Compile(ctx, files)
	if err != nil {
		return nil, err
	}
	cache.Lock()
	if len(cache.sets) >= maxCached {
		clear(cache.sets)
	}
	cache.sets[key] = s
	cache.Unlock()
	return s, nil
}
