package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/fleetwave/fleetwave/gitops/pushevent"
	"github.com/fleetwave/fleetwave/workflows"

	"github.com/fleetwave/fleetwave/rollout"
)

const (
	testFleet  = "demo"
	testSecret = "s3cr3t-for-tests"
	testSHA    = "0123456789abcdef0123456789abcdef01234567"
	testID     = "rollout/demo/0123456789ab"
	zeroSHA    = "0000000000000000000000000000000000000000"
)

// lockedBuffer is a log sink that the handler and the test may touch from different goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newTestNode(t *testing.T, tc client.Client, secret string) (*node, *lockedBuffer) {
	t.Helper()
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return newNode(log, tc, nil, testFleet, "", "main", []byte(secret)), logs
}

func pushBody(t *testing.T, ref, after string) []byte {
	t.Helper()
	b, err := json.Marshal(pushevent.Event{Repository: "fleet", Ref: ref, Before: "89abcdef0123456789abcdef0123456789abcdef", After: after})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// do sends one request straight to the node's handler.
func do(h http.Handler, method, path string, body []byte, sig string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set(pushevent.SignatureHeader, sig)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// pushCounts reads fleetwave_push_events_total by result from GET /metrics.
func pushCounts(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	rec := do(h, http.MethodGet, "/metrics", nil, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	out := map[string]float64{}
	const prefix = `fleetwave_push_events_total{fleet="` + testFleet + `",result="`
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		label, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			t.Fatalf("cannot parse metrics line %q", sc.Text())
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		out[label] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func newRun(t *testing.T, id, runID string) *mocks.WorkflowRun {
	run := mocks.NewWorkflowRun(t)
	run.On("GetID").Return(id).Maybe()
	run.On("GetRunID").Return(runID).Maybe()
	return run
}

// expectStart makes SignalWithStartWorkflow (the submission to the fleet workflow) return
// err, and records what it was called with.
type startCall struct {
	id       string
	signal   string
	arg      any
	opts     client.StartWorkflowOptions
	workflow any
	args     []any
}

func expectStart(tc *mocks.Client, run client.WorkflowRun, err error, calls *[]startCall) *mock.Call {
	return tc.On("SignalWithStartWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything).
		Run(func(a mock.Arguments) {
			*calls = append(*calls, startCall{id: a.String(1), signal: a.String(2), arg: a.Get(3),
				opts: a.Get(4).(client.StartWorkflowOptions), workflow: a.Get(5), args: a[6:]})
		}).
		Return(run, err)
}

func sameFunc(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	return va.Kind() == reflect.Func && vb.Kind() == reflect.Func && va.Pointer() == vb.Pointer()
}

func TestGitHook(t *testing.T) {
	valid := func(t *testing.T) []byte { return pushBody(t, "refs/heads/main", testSHA) }
	signed := func(b []byte) string { return pushevent.Sign(b, []byte(testSecret)) }
	otherBody := pushBody(t, "refs/heads/main", strings.Repeat("f", 40))

	tests := []struct {
		name   string
		secret string // the node's secret; testSecret unless "-" (no secret)
		method string // POST unless set
		body   func(t *testing.T) []byte
		sig    func(body []byte) string
		// setup programs the Temporal mock; nil means no call at all is expected.
		setup     func(t *testing.T, tc *mocks.Client, calls *[]startCall)
		wantCode  int
		wantReply *hookReply // nil: reply is not JSON (checked elsewhere)
		reason    string     // substring the reply's reason must contain
		noLeak    []string   // strings the reply must not contain
		wantStart int        // ExecuteWorkflow calls
		counts    map[string]float64
	}{
		{
			name: "signed push to the source branch is submitted to the fleet",
			body: valid, sig: signed,
			setup: func(t *testing.T, tc *mocks.Client, calls *[]startCall) {
				expectStart(tc, newRun(t, "fleet/demo", "run-1"), nil, calls).Once()
			},
			wantCode:  http.StatusAccepted,
			wantReply: &hookReply{Status: "accepted", Rollout: testID},
			wantStart: 1,
			counts:    map[string]float64{"accepted": 1},
		},
		{
			name:     "wrong signature",
			body:     valid,
			sig:      func([]byte) string { return "sha256=" + strings.Repeat("ab", 32) },
			wantCode: http.StatusUnauthorized, wantReply: &hookReply{Status: "rejected"}, reason: "invalid signature",
			counts: map[string]float64{"unauthorized": 1},
		},
		{
			name:     "missing signature",
			body:     valid,
			sig:      func([]byte) string { return "" },
			wantCode: http.StatusUnauthorized, wantReply: &hookReply{Status: "rejected"}, reason: "invalid signature",
			counts: map[string]float64{"unauthorized": 1},
		},
		{
			name:     "signature without the sha256= prefix",
			body:     valid,
			sig:      func(b []byte) string { return strings.TrimPrefix(signed(b), "sha256=") },
			wantCode: http.StatusUnauthorized, wantReply: &hookReply{Status: "rejected"}, reason: "invalid signature",
			counts: map[string]float64{"unauthorized": 1},
		},
		{
			name:     "signature that is not hex",
			body:     valid,
			sig:      func([]byte) string { return "sha256=not-hex" },
			wantCode: http.StatusUnauthorized, wantReply: &hookReply{Status: "rejected"}, reason: "invalid signature",
			counts: map[string]float64{"unauthorized": 1},
		},
		{
			name:     "signature made with another secret",
			body:     valid,
			sig:      func(b []byte) string { return pushevent.Sign(b, []byte("another secret")) },
			wantCode: http.StatusUnauthorized, wantReply: &hookReply{Status: "rejected"}, reason: "invalid signature",
			counts: map[string]float64{"unauthorized": 1},
		},
		{
			name:     "signature of another body",
			body:     valid,
			sig:      func([]byte) string { return signed(otherBody) },
			wantCode: http.StatusUnauthorized, wantReply: &hookReply{Status: "rejected"}, reason: "invalid signature",
			counts: map[string]float64{"unauthorized": 1},
		},
		{
			name:   "node without a secret fails closed",
			secret: "-",
			body:   valid,
			// Signed with the empty key: whoever knows there is no secret still gets nowhere.
			sig:      func(b []byte) string { return pushevent.Sign(b, nil) },
			wantCode: http.StatusUnauthorized, wantReply: &hookReply{Status: "rejected"}, reason: "invalid signature",
			counts: map[string]float64{"unauthorized": 1},
		},
		{
			name:     "body over 5 MiB",
			body:     func(*testing.T) []byte { return bytes.Repeat([]byte(" "), maxHookBody+1) },
			sig:      signed,
			wantCode: http.StatusRequestEntityTooLarge, wantReply: &hookReply{Status: "rejected"}, reason: "5 MiB",
			counts: map[string]float64{"too_large": 1},
		},
		{
			// Exactly the limit is read whole and judged on its signature (here: none).
			name:     "body of exactly 5 MiB is not too large",
			body:     func(*testing.T) []byte { return bytes.Repeat([]byte(" "), maxHookBody) },
			sig:      func([]byte) string { return "" },
			wantCode: http.StatusUnauthorized, wantReply: &hookReply{Status: "rejected"}, reason: "invalid signature",
			counts: map[string]float64{"unauthorized": 1},
		},
		{
			name:     "malformed JSON",
			body:     func(*testing.T) []byte { return []byte(`{"ref": "refs/heads/main", "after": `) },
			sig:      signed,
			wantCode: http.StatusBadRequest, wantReply: &hookReply{Status: "rejected"}, reason: "malformed push event",
			counts: map[string]float64{"bad_request": 1},
		},
		{
			name:     "after is not a commit hash",
			body:     func(t *testing.T) []byte { return pushBody(t, "refs/heads/main", "main") },
			sig:      signed,
			wantCode: http.StatusBadRequest, wantReply: &hookReply{Status: "rejected"}, reason: "40-character commit hash",
			counts: map[string]float64{"bad_request": 1},
		},
		{
			name:     "push to another branch",
			body:     func(t *testing.T) []byte { return pushBody(t, "refs/heads/feature", testSHA) },
			sig:      signed,
			wantCode: http.StatusAccepted, wantReply: &hookReply{Status: "ignored"}, reason: "refs/heads/feature",
			counts: map[string]float64{"ignored": 1},
		},
		{
			name:     "tag push",
			body:     func(t *testing.T) []byte { return pushBody(t, "refs/tags/main", testSHA) },
			sig:      signed,
			wantCode: http.StatusAccepted, wantReply: &hookReply{Status: "ignored"}, reason: "refs/tags/main",
			counts: map[string]float64{"ignored": 1},
		},
		{
			name:     "deletion of the source branch",
			body:     func(t *testing.T) []byte { return pushBody(t, "refs/heads/main", zeroSHA) },
			sig:      signed,
			wantCode: http.StatusAccepted, wantReply: &hookReply{Status: "ignored"}, reason: "branch deleted",
			counts: map[string]float64{"ignored": 1},
		},
		{
			name:     "GET is not allowed",
			method:   http.MethodGet,
			body:     func(*testing.T) []byte { return nil },
			sig:      func([]byte) string { return "" },
			wantCode: http.StatusMethodNotAllowed,
			counts:   map[string]float64{},
		},
		{
			name: "Temporal refuses the start",
			body: valid, sig: signed,
			setup: func(t *testing.T, tc *mocks.Client, calls *[]startCall) {
				expectStart(tc, nil, errors.New("frontend 10.1.2.3:7233: namespace fleet-prod not found"), calls).Once()
			},
			wantCode:  http.StatusServiceUnavailable,
			wantReply: &hookReply{Status: "error"},
			reason:    "cannot start the rollout",
			noLeak:    []string{"10.1.2.3", "fleet-prod", "namespace", "not found"},
			wantStart: 1,
			counts:    map[string]float64{"error": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := mocks.NewClient(t) // asserts the expectations at cleanup; any other call fails
			var calls []startCall
			if tt.setup != nil {
				tt.setup(t, tc, &calls)
			}
			secret := testSecret
			if tt.secret == "-" {
				secret = ""
			}
			n, logs := newTestNode(t, tc, secret)
			h := n.handler()
			body := tt.body(t)
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			rec := do(h, method, "/hooks/git", body, tt.sig(body))

			if rec.Code != tt.wantCode {
				t.Errorf("status = %d, want %d; body %s", rec.Code, tt.wantCode, rec.Body)
			}
			if tt.wantReply != nil {
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", ct)
				}
				var got hookReply
				dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&got); err != nil {
					t.Fatalf("reply %q is not a hook reply: %v", rec.Body, err)
				}
				if !strings.Contains(got.Reason, tt.reason) {
					t.Errorf("reason %q does not contain %q", got.Reason, tt.reason)
				}
				if tt.reason != "" {
					got.Reason = ""
				}
				if diff := cmp.Diff(*tt.wantReply, got); diff != "" {
					t.Errorf("reply (-want +got):\n%s", diff)
				}
			}
			for _, s := range tt.noLeak {
				if strings.Contains(rec.Body.String(), s) {
					t.Errorf("reply %q leaks %q", rec.Body, s)
				}
			}
			if len(calls) != tt.wantStart {
				t.Errorf("SignalWithStartWorkflow called %d times, want %d", len(calls), tt.wantStart)
			}
			for _, c := range calls {
				checkStart(t, c)
			}
			if tt.wantCode == http.StatusServiceUnavailable && !strings.Contains(logs.String(), "namespace fleet-prod not found") {
				t.Errorf("the server log does not say why the start failed:\n%s", logs)
			}
			if diff := cmp.Diff(tt.counts, pushCounts(t, h)); diff != "" {
				t.Errorf("fleetwave_push_events_total (-want +got):\n%s", diff)
			}
		})
	}
}

// checkStart checks that a push is submitted to the fleet's coordinator, which starts the
// rollout with an idempotent ID.
func checkStart(t *testing.T, c startCall) {
	t.Helper()
	if c.id != "fleet/demo" || c.opts.ID != "fleet/demo" || c.opts.TaskQueue != "fleetwave/demo" {
		t.Errorf("submitted to %q (options ID %q, queue %q), want fleet/demo on fleetwave/demo", c.id, c.opts.ID, c.opts.TaskQueue)
	}
	if c.signal != workflows.SignalCommit {
		t.Errorf("signal %q, want %q", c.signal, workflows.SignalCommit)
	}
	// The push event's facts go with the commit, for the rollout's report.
	wantSignal := workflows.CommitSignal{Commit: testSHA, Trigger: &rollout.Trigger{Via: rollout.TriggerPush, Host: "generic", Repository: "fleet"}}
	if diff := cmp.Diff(wantSignal, c.arg); diff != "" {
		t.Errorf("signal argument (-want +got):\n%s", diff)
	}
	if !sameFunc(c.workflow, workflows.Fleet) {
		t.Errorf("workflow = %T, want workflows.Fleet", c.workflow)
	}
	want := []any{workflows.FleetInput{Fleet: testFleet, SourceBranch: "main"}}
	if diff := cmp.Diff(want, c.args); diff != "" {
		t.Errorf("workflow input (-want +got):\n%s", diff)
	}
}

// TestGitHookRedelivery delivers the same push twice: both are submitted and both replies name
// the same rollout; the fleet workflow starts it once (its ID is per commit).
func TestGitHookRedelivery(t *testing.T) {
	tc := mocks.NewClient(t)
	var calls []startCall
	expectStart(tc, newRun(t, "fleet/demo", "run-1"), nil, &calls).Twice()

	n, _ := newTestNode(t, tc, testSecret)
	h := n.handler()
	body := pushBody(t, "refs/heads/main", testSHA)
	for i := range 2 {
		rec := do(h, http.MethodPost, "/hooks/git", body, pushevent.Sign(body, []byte(testSecret)))
		if rec.Code != http.StatusAccepted {
			t.Fatalf("delivery %d: status %d %s", i+1, rec.Code, rec.Body)
		}
		var got hookReply
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(hookReply{Status: "accepted", Rollout: testID}, got); diff != "" {
			t.Errorf("delivery %d: reply (-want +got):\n%s", i+1, diff)
		}
	}
	if len(calls) != 2 {
		t.Fatalf("SignalWithStartWorkflow called %d times, want 2", len(calls))
	}
	for _, c := range calls {
		checkStart(t, c)
	}
	if diff := cmp.Diff(map[string]float64{"accepted": 2}, pushCounts(t, h)); diff != "" {
		t.Errorf("fleetwave_push_events_total (-want +got):\n%s", diff)
	}
}

// TestGitHookOverHTTP goes through a real HTTP server once, as a git host would.
func TestGitHookOverHTTP(t *testing.T) {
	tc := mocks.NewClient(t)
	var calls []startCall
	expectStart(tc, newRun(t, "fleet/demo", "run-1"), nil, &calls).Once()
	n, _ := newTestNode(t, tc, testSecret)
	srv := httptest.NewServer(n.handler())
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := notifyPush(ctx, srv.URL+"/hooks/git", "fleet", "main", testSHA, []byte(testSecret)); err != nil {
		t.Fatalf("notifyPush: %v", err)
	}
	if len(calls) != 1 {
		t.Fatalf("SignalWithStartWorkflow called %d times, want 1", len(calls))
	}
	checkStart(t, calls[0])
	err := notifyPush(ctx, srv.URL+"/hooks/git", "fleet", "main", testSHA, []byte("wrong"))
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("notifyPush with the wrong secret: %v, want a 401 error", err)
	}
}

func TestHealthz(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantBody string
	}{
		{"temporal reachable", nil, http.StatusOK, "ok\n"},
		{"temporal unreachable", errors.New("connection refused"), http.StatusServiceUnavailable, "temporal unreachable\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := mocks.NewClient(t)
			var resp *client.CheckHealthResponse
			if tt.err == nil {
				resp = &client.CheckHealthResponse{}
			}
			tc.On("CheckHealth", mock.Anything, mock.Anything).Return(resp, tt.err).Once()
			n, _ := newTestNode(t, tc, testSecret)
			rec := do(n.handler(), http.MethodGet, "/healthz", nil, "")
			if rec.Code != tt.wantCode || rec.Body.String() != tt.wantBody {
				t.Errorf("GET /healthz = %d %q, want %d %q", rec.Code, rec.Body, tt.wantCode, tt.wantBody)
			}
		})
	}
}
