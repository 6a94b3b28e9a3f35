package rollout

import (
	"errors"

	"github.com/goccy/go-yaml"
)

// The file schema. It is kept apart from Plan so the model carries parsed values (durations,
// resolved waves) while the file keeps what the user wrote, for positions and messages.
type fileDoc struct {
	APIVersion string       `yaml:"apiVersion"`
	Kind       string       `yaml:"kind"`
	Metadata   fileMetadata `yaml:"metadata"`
	Spec       fileSpec     `yaml:"spec"`
}

type fileMetadata struct {
	Name string `yaml:"name"`
}

type fileSpec struct {
	SourceBranch string        `yaml:"sourceBranch"`
	SiteBranch   string        `yaml:"siteBranch"`
	Sites        []fileSite    `yaml:"sites"`
	Waves        []fileWave    `yaml:"waves"`
	Health       fileHealth    `yaml:"health"`
	Rollback     *fileRollback `yaml:"rollback"`
	OnNewCommit  string        `yaml:"onNewCommit"`
	Policies     *filePolicies `yaml:"policies"`
	Notify       *fileNotify   `yaml:"notify"`
}

type fileNotify struct {
	Slack *fileSlack `yaml:"slack"`
}

type fileSlack struct {
	Channel   string   `yaml:"channel"`
	Operators []string `yaml:"operators"`
}

type fileApproval struct {
	Approvers []string `yaml:"approvers"`
	Quorum    *int     `yaml:"quorum"`
	Timeout   string   `yaml:"timeout"`
	OnTimeout string   `yaml:"onTimeout"`
}

type filePolicies struct {
	Freezes         []fileFreeze       `yaml:"freezes"`
	BusinessHours   *fileBusinessHours `yaml:"businessHours"`
	MaxSitesPerWave *int               `yaml:"maxSitesPerWave"`
	MinSoak         string             `yaml:"minSoak"`
}

type fileFreeze struct {
	Name     string   `yaml:"name"`
	Start    string   `yaml:"start"`
	Timezone string   `yaml:"timezone"`
	Duration string   `yaml:"duration"`
	RRule    string   `yaml:"rrule"`
	Waves    []string `yaml:"waves"`
}

type fileBusinessHours struct {
	Days  []string `yaml:"days"`
	Start string   `yaml:"start"`
	End   string   `yaml:"end"`
	Waves []string `yaml:"waves"`
}

type fileSite struct {
	Name     string            `yaml:"name"`
	Labels   map[string]string `yaml:"labels"`
	Timezone string            `yaml:"timezone"`
	Cluster  *Cluster          `yaml:"cluster"`
}

type fileWave struct {
	Name        string            `yaml:"name"`
	Selector    map[string]string `yaml:"selector"`
	Sites       []string          `yaml:"sites"`
	MaxParallel *int              `yaml:"maxParallel"`
	MaxFailures any               `yaml:"maxFailures"` // a count (2) or a percentage ("5%")
	Bake        string            `yaml:"bake"`
	MinSoak     string            `yaml:"minSoak"`
	Approval    *fileApproval     `yaml:"approval"`
}

type fileHealth struct {
	ConvergenceTimeout string      `yaml:"convergenceTimeout"`
	Interval           string      `yaml:"interval"`
	FailureThreshold   *int        `yaml:"failureThreshold"`
	UnknownTimeout     string      `yaml:"unknownTimeout"`
	Checks             []fileCheck `yaml:"checks"`
}

type fileCheck struct {
	Name       string          `yaml:"name"`
	Prometheus *filePrometheus `yaml:"prometheus"`
	HTTP       *fileHTTP       `yaml:"http"`
}

type filePrometheus struct {
	URL        string   `yaml:"url"`
	Query      string   `yaml:"query"`
	Min        *float64 `yaml:"min"`
	Max        *float64 `yaml:"max"`
	AllowEmpty bool     `yaml:"allowEmpty"`
	Timeout    string   `yaml:"timeout"`
	StaleAfter string   `yaml:"staleAfter"`
}

type fileHTTP struct {
	URL     string `yaml:"url"`
	Status  *int   `yaml:"status"`
	Body    string `yaml:"body"`
	Timeout string `yaml:"timeout"`
}

type fileRollback struct {
	Automatic *bool  `yaml:"automatic"`
	Scope     string `yaml:"scope"`
}

// yamlIssue turns a go-yaml error into an Issue with its position.
func yamlIssue(err error) Issue {
	var ye yaml.Error
	if errors.As(err, &ye) {
		is := Issue{Message: ye.GetMessage()}
		if tk := ye.GetToken(); tk != nil && tk.Position != nil {
			is.Line, is.Column = tk.Position.Line, tk.Position.Column
		}
		return is
	}
	return Issue{Message: err.Error()}
}
