package test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/fleetwave/fleetwave/internal/schematest"
	"github.com/fleetwave/fleetwave/rollout"
)

// yamlBlock is a fenced yaml block, with what precedes it (a marker line may sit there).
var yamlBlock = regexp.MustCompile("(?ms)([^\n]*)\n```ya?ml\n(.*?)^```")

// invalidMarker before a block says the block is a deliberate mistake.
const invalidMarker = "<!-- invalid -->"

// TestDocsYAML: every YAML block of README.md and docs/ is valid YAML, and every whole
// document of fleetwave's kinds (a plan, a serve config) passes the parser the product uses;
// a block after the marker "<!-- invalid -->" must fail instead.
func TestDocsYAML(t *testing.T) {
	checked := map[string]int{}
	for _, file := range docFiles(t) {
		data := readDoc(t, file)
		for _, m := range yamlBlock.FindAllStringSubmatch(data, -1) {
			before, block := m[1], m[2]
			line := strings.Count(data[:strings.Index(data, m[0])], "\n") + 2
			where := file + ":" + strconv.Itoa(line)
			name := file
			var err error
			kind := ""
			switch {
			case regexp.MustCompile(`(?m)^kind:\s*` + rollout.Kind + `\b`).MatchString(block):
				kind = rollout.Kind
				_, err = rollout.ParsePlan(name, []byte(block))
			case regexp.MustCompile(`(?m)^kind:\s*` + rollout.KindServeConfig + `\b`).MatchString(block):
				kind = rollout.KindServeConfig
				_, err = rollout.ParseServeConfig(name, []byte(block))
			default:
				kind = "yaml"
				var v any
				err = yaml.Unmarshal([]byte(block), &v)
			}
			checked[kind]++
			if strings.Contains(before, invalidMarker) {
				if err == nil {
					t.Errorf("%s: a block marked %s is valid", where, invalidMarker)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s: %s block: %v", where, kind, shifted(err, line-1))
			}
		}
	}
	if checked[rollout.Kind] == 0 {
		t.Errorf("no plan found in the docs: %v", checked)
	}
	t.Logf("checked %v", checked)
}

// shifted moves a parse error's positions from the block's lines to the file's.
func shifted(err error, lines int) error {
	var pe *rollout.PlanError
	if !errors.As(err, &pe) {
		return err
	}
	out := *pe
	out.Issues = nil
	for _, is := range pe.Issues {
		is.Line += lines
		out.Issues = append(out.Issues, is)
	}
	return &out
}

// jsonBlock is a fenced json block, with the line before it.
var jsonBlock = regexp.MustCompile("(?ms)([^\n]*)\n```json\n(.*?)^```")

// TestDocsJSON: every JSON block of README.md and docs/ is JSON, and every fleetwave object
// among them (apiVersion fleetwave.dev/v1alpha1) follows the schema of its kind.
func TestDocsJSON(t *testing.T) {
	objects := 0
	for _, file := range docFiles(t) {
		data := readDoc(t, file)
		for _, m := range jsonBlock.FindAllStringSubmatchIndex(data, -1) {
			before, block := data[m[2]:m[3]], data[m[4]:m[5]]
			where := file + ":" + strconv.Itoa(strings.Count(data[:m[4]], "\n")+1)
			var v map[string]any
			err := json.Unmarshal([]byte(block), &v)
			if strings.Contains(before, invalidMarker) {
				if err == nil {
					t.Errorf("%s: a block marked %s is valid", where, invalidMarker)
				}
				continue
			}
			if err != nil {
				var list []any
				if json.Unmarshal([]byte(block), &list) != nil {
					t.Errorf("%s: not JSON: %v", where, err)
				}
				continue
			}
			if v["apiVersion"] == rollout.APIVersion {
				kind, _ := v["kind"].(string)
				if err := schematest.Validate(kind, []byte(block)); err != nil {
					t.Errorf("%s: a %s that does not follow docs/schemas/v1alpha1.json: %v", where, kind, err)
				}
				objects++
			}
		}
	}
	if objects == 0 {
		t.Error("no fleetwave object found in the docs' JSON blocks")
	}
}

// outputMarker before a fenced block names the file the block shows, relative to the
// repository root: the block must be that file, as it is.
var outputMarker = regexp.MustCompile("(?ms)<!-- output: (\\S+) -->\n```[a-z]*\n(.*?)^```")

// TestDocsShownOutputs: every block the docs mark as a file's content (a golden report, say)
// is that file, so a shown output cannot drift from what the product writes.
func TestDocsShownOutputs(t *testing.T) {
	shown := 0
	for _, file := range docFiles(t) {
		data := readDoc(t, file)
		for _, m := range outputMarker.FindAllStringSubmatch(data, -1) {
			want, err := os.ReadFile(filepath.Join("..", m[1]))
			if err != nil {
				t.Errorf("%s: %v", file, err)
				continue
			}
			if m[2] != string(want) {
				t.Errorf("%s shows %s, which is now:\n%s", file, m[1], want)
			}
			shown++
		}
	}
	if shown == 0 {
		t.Error("no <!-- output: FILE --> block found in the docs")
	}
}

func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append(files, filepath.Join("..", "README.md"))
}

func readDoc(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
