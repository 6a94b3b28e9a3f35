package workflows

import (
	"errors"

	"go.temporal.io/sdk/worker"

	"github.com/fleetwave/fleetwave/activities"
)

// Activities are the activities a fleetwave worker runs. Git, Sites and Executions are required:
// a worker without Executions would hold every rollout at the gate that keeps a fleet's rollouts
// apart (it fails closed). Slack and Evidence may be nil: the defaults post nothing and keep no
// evidence, and every worker has them, so a rollout's last activity runs wherever it lands.
type Activities struct {
	Git        *activities.Git
	Sites      *activities.Sites
	Executions *activities.Executions
	Slack      *activities.Slack
	Evidence   *activities.Evidence
}

// Register registers every workflow of fleetwave and the activities with a worker: the one list
// serve, dev, the rehearsal and the tests' workers share.
func Register(w worker.Registry, a Activities) error {
	if a.Git == nil || a.Sites == nil || a.Executions == nil {
		return errors.New("register the fleetwave worker: the Git, Sites and Executions activities are required")
	}
	for _, wf := range []any{Fleet, Rollout, Wave, Watch, Rollback, CatchUp} {
		w.RegisterWorkflow(wf)
	}
	w.RegisterActivity(a.Git)
	w.RegisterActivity(a.Sites)
	w.RegisterActivity(a.Executions)
	w.RegisterActivity(orDefault(a.Slack))
	w.RegisterActivity(orDefault(a.Evidence))
	return nil
}

func orDefault[T any](p *T) *T {
	if p == nil {
		return new(T)
	}
	return p
}
