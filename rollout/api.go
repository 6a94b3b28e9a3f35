package rollout

// Kinds of the JSON objects fleetwave prints (`-o json`, reports) and its status query returns.
// Each carries APIVersion and its kind, like a Kubernetes object; docs/json.md documents them
// and docs/schemas holds their JSON schemas.
const (
	KindRolloutStatus = "RolloutStatus"
	KindRolloutList   = "RolloutList"
	KindSiteList      = "SiteList"
	KindReport        = "Report"
)

// TypeMeta is the apiVersion and kind every JSON object of fleetwave starts with.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// Meta returns the TypeMeta of kind.
func Meta(kind string) TypeMeta { return TypeMeta{APIVersion: APIVersion, Kind: kind} }

// RolloutStatus is a rollout's status as `fleetwave status -o json` prints it and the status
// query returns it: the Status's fields after apiVersion and kind.
type RolloutStatus struct {
	TypeMeta
	Status
}

// Object returns the status as a RolloutStatus object.
func (s Status) Object() RolloutStatus {
	return RolloutStatus{TypeMeta: Meta(KindRolloutStatus), Status: s}
}

// What submitted a commit for rollout (Trigger.Via).
const (
	TriggerPush = "push" // a push event from the git host
	TriggerCLI  = "cli"  // `fleetwave start`
	TriggerPoll = "poll" // the fleet's coordinator read a new head of the source branch
)

// Trigger says what submitted a rollout's commit, for its report.
type Trigger struct {
	Via string `json:"via"`
	// Host, Delivery, Repository and Pusher are the push event's: the git host that sent it,
	// its delivery ID, the repository it names and who pushed, as far as the host says.
	Host       string `json:"host,omitempty"`
	Delivery   string `json:"delivery,omitempty"`
	Repository string `json:"repository,omitempty"`
	Pusher     string `json:"pusher,omitempty"`
	// By is who ran `fleetwave start`.
	By string `json:"by,omitempty"`
}
