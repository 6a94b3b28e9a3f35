package rollout

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/agnivade/levenshtein"
	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/token"
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
	SiteFiles    string        `yaml:"siteFiles"`
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
	Approvers    []string `yaml:"approvers"`
	Quorum       *int     `yaml:"quorum"`
	Timeout      string   `yaml:"timeout"`
	OnTimeout    string   `yaml:"onTimeout"`
	RemindBefore string   `yaml:"remindBefore"`
	Via          []string `yaml:"via"`
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
	Percent     *float64          `yaml:"percent"`
	Spread      string            `yaml:"spread"`
	MaxParallel *int              `yaml:"maxParallel"`
	MaxFailures any               `yaml:"maxFailures"` // a count (2) or a percentage ("5%")
	Bake        string            `yaml:"bake"`
	MinSoak     string            `yaml:"minSoak"`
	Approval    *fileApproval     `yaml:"approval"`
}

type fileHealth struct {
	ConvergenceTimeout string       `yaml:"convergenceTimeout"`
	Interval           string       `yaml:"interval"`
	FailureThreshold   *int         `yaml:"failureThreshold"`
	UnknownTimeout     string       `yaml:"unknownTimeout"`
	Watch              string       `yaml:"watch"`
	Checks             []fileCheck  `yaml:"checks"`
	Offline            *fileOffline `yaml:"offline"`
}

type fileOffline struct {
	After       string `yaml:"after"`
	Action      string `yaml:"action"`
	MaxDeferred any    `yaml:"maxDeferred"` // a count (2) or a percentage ("10%")
	Probe       string `yaml:"probe"`
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

// yamlIssue turns a go-yaml error into an Issue with its position, in plain words: an unknown
// field with the nearest field of doc's type, a value of the wrong type with the field's name
// and what it wants, a tab with how YAML indents.
func yamlIssue(err error, doc any) Issue {
	var ye yaml.Error
	if !errors.As(err, &ye) {
		return Issue{Message: err.Error()}
	}
	is := Issue{Message: ye.GetMessage()}
	tk := ye.GetToken()
	if tk != nil && tk.Position != nil {
		is.Line, is.Column = tk.Position.Line, tk.Position.Column
	}
	msg := ye.GetMessage()
	switch {
	case strings.HasPrefix(msg, "unknown field "):
		name := strings.Trim(strings.TrimPrefix(msg, "unknown field "), `"`)
		if near := nearestField(name, doc); near != "" {
			is.Message += fmt.Sprintf(": did you mean %q?", near)
		}
	case strings.HasPrefix(msg, "cannot unmarshal "):
		if field, want := keyOf(tk), typeWords(msg); field != "" && want != "" {
			is.Message = fmt.Sprintf("%s: want %s, got %s", field, want, valueWords(tk))
		}
	case strings.Contains(msg, " was used where ") && strings.HasSuffix(msg, " is expected"):
		// "string was used where sequence is expected"
		got, want, _ := strings.Cut(strings.TrimSuffix(msg, " is expected"), " was used where ")
		words := map[string]string{"sequence": "a list", "mapping": "a mapping (key: value)", "string": "a string"}
		if field := keyOf(tk); field != "" && words[want] != "" {
			is.Message = fmt.Sprintf("%s: want %s, got %s", field, words[want], cmp.Or(words[got], got))
		}
	case strings.Contains(msg, "found character '\t'"):
		is.Message = "a tab character: YAML indents with spaces only; replace the tabs on this line with spaces"
	}
	return is
}

// keyOf is the mapping key whose value is tk ("" when tk is not a mapping value).
func keyOf(tk *token.Token) string {
	if tk == nil || tk.Prev == nil || tk.Prev.Type != token.MappingValueType || tk.Prev.Prev == nil {
		return ""
	}
	return tk.Prev.Prev.Value
}

// typeWords says what a "cannot unmarshal X into … of type T" error wanted, in words.
func typeWords(msg string) string {
	_, t, ok := strings.Cut(msg, " of type ")
	if !ok {
		return ""
	}
	switch t = strings.TrimSpace(t); {
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"), strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string (quote it)"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["), strings.HasPrefix(t, "rollout."), strings.HasPrefix(t, "struct"):
		return "a mapping (key: value)"
	}
	return ""
}

// valueWords describes the value a token holds: "the string \"two\"", "a list".
func valueWords(tk *token.Token) string {
	switch tk.Type {
	case token.SequenceStartType, token.SequenceEntryType:
		return "a list"
	case token.MappingStartType:
		return "a mapping"
	case token.BoolType:
		return "the boolean " + tk.Value
	case token.IntegerType, token.FloatType, token.BinaryIntegerType, token.OctetIntegerType, token.HexIntegerType:
		return "the number " + tk.Value
	}
	return fmt.Sprintf("%q", tk.Value)
}

// nearestField is the YAML field name of doc's type (at any depth) nearest to name, when it is
// near enough to be a typo.
func nearestField(name string, doc any) string {
	names := map[string]bool{}
	var walk func(t reflect.Type)
	seen := map[reflect.Type]bool{}
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for i := range t.NumField() {
			f := t.Field(i)
			if tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); tag != "" && tag != "-" {
				names[tag] = true
			}
			walk(f.Type)
		}
	}
	if doc != nil {
		walk(reflect.TypeOf(doc))
	}
	best, bestDist := "", len(name)/3+1
	for n := range names {
		if d := levenshtein.ComputeDistance(strings.ToLower(name), strings.ToLower(n)); d < bestDist || (d == bestDist && best != "" && n < best) {
			best, bestDist = n, d
		}
	}
	return best
}

// SitesLabel names up to three sites and counts the rest.
func SitesLabel(sites []string) string {
	if len(sites) <= 3 {
		return fmt.Sprintf("%s (%s)", Count(len(sites), "site"), strings.Join(sites, ", "))
	}
	return fmt.Sprintf("%s (%s, ...)", Count(len(sites), "site"), strings.Join(sites[:3], ", "))
}

// Count says n things with the noun in the right number: "1 site", "2 sites".
func Count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	for _, suffix := range []string{"s", "x", "sh", "ch"} {
		if strings.HasSuffix(noun, suffix) {
			return fmt.Sprintf("%d %ses", n, noun)
		}
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
