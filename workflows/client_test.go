package workflows

import (
	"testing"
)

func TestListFilterQuery(t *testing.T) {
	tests := []struct {
		f    ListFilter
		want string
	}{
		{ListFilter{}, `WorkflowType = "Rollout"`},
		{ListFilter{Fleet: "demo", Commit: "abc"}, `WorkflowType = "Rollout" AND FleetwaveFleet = "demo" AND FleetwaveCommit STARTS_WITH "abc"`},
		// A running state only matches running workflows: a rollout terminated while Promoting
		// keeps that value in its search attribute.
		{ListFilter{State: "Promoting"}, `WorkflowType = "Rollout" AND FleetwaveState = "Promoting" AND ExecutionStatus = "Running"`},
		{ListFilter{State: "Failed"}, `WorkflowType = "Rollout" AND FleetwaveState = "Failed"`},
		// States set from outside are Temporal's execution status.
		{ListFilter{State: "Terminated"}, `WorkflowType = "Rollout" AND ExecutionStatus = "Terminated"`},
		{ListFilter{State: "TimedOut"}, `WorkflowType = "Rollout" AND ExecutionStatus = "TimedOut"`},
		{ListFilter{State: "Cancelled"}, `WorkflowType = "Rollout" AND ExecutionStatus = "Canceled"`},
	}
	for _, tt := range tests {
		if got := tt.f.Query(); got != tt.want {
			t.Errorf("%+v.Query() = %s, want %s", tt.f, got, tt.want)
		}
	}
}
